"""libweft through ctypes: finding the library, the C API's prototypes, and status codes as exceptions.

The package is a client of the stable C API (include/weft/weft.h) only, so one wheel serves every Python version and
the errors, messages and ownership rules are exactly those the C API documents.
"""
import ctypes
import importlib.util
import os
import pathlib
import sys

from .errors import error_for

c_char_p = ctypes.c_char_p
c_void_p = ctypes.c_void_p
c_int = ctypes.c_int
c_size_t = ctypes.c_size_t
c_double = ctypes.c_double
c_int64 = ctypes.c_int64
P = ctypes.POINTER


def _find_library():
    """WEFT_LIBRARY, then the copy `pip install .` put beside this file, then a build tree above the sources."""
    if os.environ.get("WEFT_LIBRARY"):
        return os.environ["WEFT_LIBRARY"]
    here = pathlib.Path(__file__).resolve().parent
    candidates = [here / "libweft.so", here.parent.parent / "build" / "libweft.so"]
    for candidate in candidates:
        if candidate.exists():
            return str(candidate)
    raise ImportError(
        "weft: libweft.so not found: install the package with `pip install .` from the weft repository, or set "
        "WEFT_LIBRARY to a built build/libweft.so (looked in " + ", ".join(map(str, candidates)) + ")")


def _import_torch_first(path):
    """A CUDA build of libweft links the system's NCCL, which, loaded first and globally, would stand in for the newer
    NCCL that an installed torch's CUDA libraries need (`undefined symbol: nccl...` on `import torch`): torch first."""
    if "torch" in sys.modules or importlib.util.find_spec("torch") is None:
        return
    with open(path, "rb") as library:
        if b"libnccl.so" not in library.read():
            return
    import torch  # noqa: F401


_PATH = _find_library()
_import_torch_first(_PATH)
# RTLD_GLOBAL: Open MPI's plugins, which libweft's MPI loads, look for MPI's own symbols in the global scope.
lib = ctypes.CDLL(_PATH, mode=ctypes.RTLD_GLOBAL)

_PROTOTYPES = {
    "weft_version": (c_char_p, []),
    "weft_api_version": (c_int, []),
    "weft_last_error": (c_char_p, []),
    "weft_free": (None, [c_void_p]),
    "weft_set_log_callback": (c_int, [c_void_p, c_void_p]),
    "weft_finalize": (c_int, []),
    "weft_trainer_create": (c_int, [c_char_p, c_char_p, P(c_char_p), c_size_t, P(c_void_p)]),
    "weft_trainer_destroy": (None, [c_void_p]),
    "weft_trainer_error": (c_char_p, [c_void_p]),
    "weft_trainer_rank": (c_int, [c_void_p, P(c_int), P(c_int)]),
    "weft_trainer_steps": (c_int, [c_void_p, P(c_int), P(c_int)]),
    "weft_trainer_step": (c_int, [c_void_p]),
    "weft_trainer_backward": (c_int, [c_void_p]),
    "weft_trainer_apply": (c_int, [c_void_p]),
    "weft_trainer_metrics": (c_int, [c_void_p, P(c_char_p)]),
    "weft_trainer_tensor_count": (c_int, [c_void_p, P(c_size_t)]),
    "weft_trainer_tensor_name": (c_int, [c_void_p, c_size_t, P(c_char_p)]),
    "weft_trainer_tensor_shape": (c_int, [c_void_p, c_char_p, P(c_int), P(c_int64)]),
    "weft_trainer_tensor_dtype": (c_int, [c_void_p, c_char_p, P(c_int)]),
    "weft_trainer_get_parameter": (c_int, [c_void_p, c_char_p, c_void_p, c_size_t]),
    "weft_trainer_set_parameter": (c_int, [c_void_p, c_char_p, c_void_p, c_size_t]),
    "weft_trainer_get_gradient": (c_int, [c_void_p, c_char_p, c_void_p, c_size_t]),
    "weft_trainer_set_gradient": (c_int, [c_void_p, c_char_p, c_void_p, c_size_t]),
    "weft_trainer_parameter_data": (c_int, [c_void_p, c_char_p, P(c_void_p)]),
    "weft_trainer_gradient_data": (c_int, [c_void_p, c_char_p, P(c_void_p)]),
    "weft_trainer_save": (c_int, [c_void_p, c_char_p]),
    "weft_trainer_load": (c_int, [c_void_p, c_char_p, P(c_int)]),
    "weft_trainer_plan": (c_int, [c_void_p, P(c_void_p)]),
    "weft_plan": (c_int, [c_char_p, c_char_p, P(c_char_p), c_size_t, c_int, P(c_void_p)]),
    "weft_checkpoint_inspect": (c_int, [c_char_p, P(c_void_p)]),
    "weft_store_create_file": (c_int, [c_char_p, P(c_void_p)]),
    "weft_store_destroy": (None, [c_void_p]),
    "weft_store_error": (c_char_p, [c_void_p]),
    "weft_store_set": (c_int, [c_void_p, c_char_p, c_void_p, c_size_t]),
    "weft_store_get": (c_int, [c_void_p, c_char_p, c_double, P(c_void_p), P(c_size_t)]),
    "weft_store_add": (c_int, [c_void_p, c_char_p, c_int64, P(c_int64)]),
    "weft_comm_world": (c_int, [c_double, P(c_void_p)]),
    "weft_comm_create": (c_int, [c_void_p, c_char_p, c_int, c_int, c_double, P(c_void_p)]),
    "weft_comm_create_transport": (c_int, [c_void_p, c_char_p, c_int, c_int, c_double, c_int, P(c_void_p)]),
    "weft_comm_transport": (c_int, [c_void_p, P(c_int)]),
    "weft_comm_split": (c_int, [c_void_p, c_int, c_int, c_char_p, P(c_void_p)]),
    "weft_comm_destroy": (None, [c_void_p]),
    "weft_comm_error": (c_char_p, [c_void_p]),
    "weft_comm_rank": (c_int, [c_void_p, P(c_int), P(c_int)]),
    "weft_all_reduce": (c_int, [c_void_p, c_void_p, c_size_t, c_int, c_int, P(c_void_p)]),
    "weft_reduce_scatter": (c_int, [c_void_p, c_void_p, c_void_p, c_size_t, c_int, c_int, P(c_void_p)]),
    "weft_all_gather": (c_int, [c_void_p, c_void_p, c_void_p, c_size_t, c_int, P(c_void_p)]),
    "weft_broadcast": (c_int, [c_void_p, c_void_p, c_size_t, c_int, c_int, P(c_void_p)]),
    "weft_send": (c_int, [c_void_p, c_void_p, c_size_t, c_int, c_int, c_int, P(c_void_p)]),
    "weft_recv": (c_int, [c_void_p, c_void_p, c_size_t, c_int, c_int, c_int, P(c_void_p)]),
    "weft_barrier": (c_int, [c_void_p, P(c_void_p)]),
    "weft_work_wait": (c_int, [c_void_p, c_double]),
    "weft_work_test": (c_int, [c_void_p, P(c_int)]),
    "weft_work_error": (c_char_p, [c_void_p]),
    "weft_work_destroy": (None, [c_void_p]),
}
for _name, (_restype, _argtypes) in _PROTOTYPES.items():
    _function = getattr(lib, _name)
    _function.restype = _restype
    _function.argtypes = _argtypes


def check(status):
    """Raises the exception class of a non-zero status with the thread's last message (every failure sets it)."""
    if status != 0:
        raise error_for(status, lib.weft_last_error().decode(errors="replace"))


def encode(text):
    return None if text is None else os.fsencode(text) if isinstance(text, os.PathLike) else text.encode()


def string_array(strings):
    encoded = [s.encode() for s in strings]
    return (c_char_p * max(1, len(encoded)))(*encoded), len(encoded)


def take_string(pointer):
    """A char* the library malloc'd: decoded, then freed."""
    try:
        return ctypes.string_at(pointer.value).decode()
    finally:
        lib.weft_free(pointer)
