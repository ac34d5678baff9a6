"""torch.distributed's backend "weft": `import weft.torch`, then `init_process_group(backend="weft")`.

The backend is a C++ extension (weft_c10d.cc, a c10d::Backend over libweft's communicators) built against the torch
it runs with on first import, by torch.utils.cpp_extension, into WEFT_TORCH_BUILD_DIR (default: `torch_extension`
beside the libweft.so the package loaded). CPU tensors only; the ranks are the processes of an MPI job (mpirun),
numbered as torch numbers them. See docs/torch_backend.md.
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
    # A group smaller than the job: its members alone would wait in weft_comm_world (collective over the job) for
    # the others until the timeout, so refuse at once.
    if dist.is_initialized() and size != dist.get_world_size():
        raise RuntimeError(f"weft backend: new_group: a group of {size} of the job's {dist.get_world_size()} ranks: "
                           "groups smaller than the job are not supported yet")
    return _extension.create_backend(store, rank, size, timeout)


if "weft" not in dist.Backend.backend_list:
    dist.Backend.register_backend("weft", _create, devices=["cpu"])
