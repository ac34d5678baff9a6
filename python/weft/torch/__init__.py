"""torch.distributed's backend "weft": `import weft.torch`, then `init_process_group(backend="weft")`.

The backend is a C++ extension (weft_c10d.cc, a c10d::Backend over libweft's communicators) built against the torch
it runs with on first import, by torch.utils.cpp_extension, into WEFT_TORCH_BUILD_DIR (default: `torch_extension`
beside the libweft.so the package loaded). CPU tensors, and CUDA tensors through host copies (as gloo moves them: correct
on any number of ranks per GPU, at host-memory speed). Under mpirun the groups are MPI groups; under torchrun
(or any launcher without MPI) they are socket groups set up through torch's store. See docs/torch_backend.md.
"""
import os
import pathlib

import torch.distributed as dist
from torch.utils import cpp_extension

from .._native import lib

_HERE = pathlib.Path(__file__).resolve().parent


def _library_dir():
    # The directory of the libweft.so the package loaded, so the extension links that very file.
    return str(pathlib.Path(lib._name).resolve().parent)


def _include_dir():
    for candidate in (_HERE / "include", _HERE.parents[2] / "include"):
        if (candidate / "weft" / "weft.h").exists():
            return str(candidate)
    raise ImportError(f"weft.torch: include/weft/weft.h not found beside {_HERE} or in the source tree")


def build(verbose=False):
    """Compiles (once; later calls reuse the build) and loads the extension module."""
    libdir = _library_dir()
    directory = os.environ.get("WEFT_TORCH_BUILD_DIR") or os.path.join(libdir, "torch_extension")
    os.makedirs(directory, exist_ok=True)
    return cpp_extension.load(
        name="weft_c10d", sources=[str(_HERE / "weft_c10d.cc")], extra_include_paths=[_include_dir()],
        extra_cflags=["-O2"], extra_ldflags=[f"-L{libdir}", "-lweft", f"-Wl,-rpath,{libdir}"],
        build_directory=directory, verbose=verbose)


_extension = build()


def _create(store, rank, size, timeout):
    # torch creates the default group first (then not yet initialized) and sub-groups (new_group, device meshes)
    # after; the extension needs the default group's size to tell an MPI job (mpirun) from torchrun's processes.
    world_size = dist.get_world_size() if dist.is_initialized() else size
    return _extension.create_backend(store, rank, size, timeout, world_size)


if "weft" not in dist.Backend.backend_list:
    dist.Backend.register_backend("weft", _create, devices=["cpu", "cuda"])
