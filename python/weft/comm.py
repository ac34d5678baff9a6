"""weft.Communicator on NumPy arrays, weft.FileStore and weft.Work: libweft's collectives from Python."""
import ctypes

import numpy as np

from . import _handles
from ._native import check, encode, lib
from .errors import ConfigError

_OPS = {"sum": 0, "max": 1, "min": 2, "product": 3, "band": 4, "bor": 5, "bxor": 6}
_DTYPES = {"float32": 0, "bfloat16": 1, "float16": 2, "int32": 3, "int64": 4}


_CODES = {np.dtype(name): code for name, code in _DTYPES.items() if name != "bfloat16"}


def _dtype_code(array, dtype):
    if dtype is None and array.dtype in _CODES:  # the common case without building the dtype's name
        return _CODES[array.dtype]
    name = dtype or array.dtype.name  # ml_dtypes' bfloat16 arrays name themselves "bfloat16"
    if dtype == "bfloat16" and array.dtype.itemsize != 2:
        raise ConfigError(f"dtype bfloat16 needs 2-byte elements (e.g. uint16 bits), not {array.dtype}")
    if name not in _DTYPES:
        raise ConfigError(f"arrays of {array.dtype} cannot travel: use float32, float16, bfloat16, int32 or int64")
    return _DTYPES[name]


def _buffer(array, writable):
    if not isinstance(array, np.ndarray):
        raise ConfigError(f"expected a NumPy array, got {type(array).__name__}")
    flags = array.flags
    if not flags.c_contiguous:
        raise ConfigError("the array must be C-contiguous (np.ascontiguousarray makes a copy that is)")
    if writable and not flags.writeable:
        raise ConfigError("the array receives the result but is read-only")
    return array.__array_interface__["data"][0]


class Work(_handles.Owner):
    """An operation started with async_op=True; its arrays stay referenced until it is waited for."""

    _close_order = 0
    _destroy = "weft_work_destroy"  # waits for an unfinished operation first

    def __init__(self, handle, arrays, result):
        self._handle, self._arrays, self.result = handle, arrays, result
        _handles.track(self)

    def wait(self, timeout_s=None):
        """Returns the result array once done; PeerFailure naming the rank and operation after timeout_s (None: the
        communicator's)."""
        if self._handle:
            check(lib.weft_work_wait(self._handle, timeout_s or 0.0))
        return self.result

    def is_completed(self):
        done = ctypes.c_int()
        check(lib.weft_work_test(self._handle, ctypes.byref(done)))
        return bool(done.value)

    def _forget(self):
        self._arrays = None


class FileStore(_handles.Owner):
    """A key-value store in a directory every process of the job sees (c10d's FileStore)."""

    _close_order = 3
    _destroy = "weft_store_destroy"

    def __init__(self, directory):
        handle = ctypes.c_void_p()
        check(lib.weft_store_create_file(encode(str(directory)), ctypes.byref(handle)))
        self._handle = handle
        _handles.track(self)

    def set(self, key, value):
        data = value.encode() if isinstance(value, str) else bytes(value)
        check(lib.weft_store_set(self._handle, key.encode(), data, len(data)))

    def get(self, key, timeout_s=300.0):
        out, size = ctypes.c_void_p(), ctypes.c_size_t()
        check(lib.weft_store_get(self._handle, key.encode(), timeout_s, ctypes.byref(out), ctypes.byref(size)))
        try:
            return ctypes.string_at(out.value, size.value)
        finally:
            lib.weft_free(out)

    def add(self, key, delta):
        result = ctypes.c_int64()
        check(lib.weft_store_add(self._handle, key.encode(), delta, ctypes.byref(result)))
        return result.value



class Communicator(_handles.Owner):
    """A group of ranks running weft's collectives on NumPy arrays, in place or into a given output.

    Every rank calls the same operations in the same order. Results are exact and the same bits on every rank: fp32
    summed in rank order, 16-bit floats summed in fp32 and rounded once, integers exactly.
    """

    _close_order = 2
    _destroy = "weft_comm_destroy"

    def __init__(self, handle):
        self._handle = handle
        _handles.track(self)
        rank, size = ctypes.c_int(), ctypes.c_int()
        check(lib.weft_comm_rank(handle, ctypes.byref(rank), ctypes.byref(size)))
        self.rank, self.size = rank.value, size.value

    @classmethod
    def world(cls, timeout_s=None):
        """Every process of the MPI job (a group of one without mpirun). Collective."""
        handle = ctypes.c_void_p()
        check(lib.weft_comm_world(timeout_s or 0.0, ctypes.byref(handle)))
        return cls(handle)

    _TRANSPORTS = {"auto": 0, "mpi": 1, "socket": 2}

    @classmethod
    def create(cls, store, name, rank, size, timeout_s=None, transport="auto"):
        """The group `name` of `size` processes that meet through `store`, this one as `rank`. transport: "mpi"
        (processes of one MPI job), "socket" (any processes that share the store: TCP between every pair, no MPI) or
        "auto" (MPI within an MPI launch of at least `size` processes, else sockets)."""
        if transport not in cls._TRANSPORTS:
            raise ValueError(f"transport {transport!r} is not one of {sorted(cls._TRANSPORTS)}")
        handle = ctypes.c_void_p()
        check(lib.weft_comm_create_transport(store._handle, name.encode(), rank, size, timeout_s or 0.0,
                                             cls._TRANSPORTS[transport], ctypes.byref(handle)))
        return cls(handle)

    @property
    def transport(self):
        """"mpi" or "socket"."""
        value = ctypes.c_int()
        check(lib.weft_comm_transport(self._handle, ctypes.byref(value)))
        return {1: "mpi", 2: "socket"}[value.value]

    def split(self, color, key=None, name="split"):
        """Collective: ranks with the same color form a group ordered by (key, rank); None for color < 0."""
        handle = ctypes.c_void_p()
        check(lib.weft_comm_split(self._handle, color, self.rank if key is None else key, name.encode(),
                                  ctypes.byref(handle)))
        return Communicator(handle) if handle.value else None

    def _run(self, function, args, arrays, result, async_op):
        if not self._handle:
            raise ValueError("this weft.Communicator is closed")
        if not async_op:
            check(function(self._handle, *args, None))
            return result
        work = ctypes.c_void_p()
        check(function(self._handle, *args, ctypes.byref(work)))
        return Work(work, arrays, result)

    def all_reduce(self, array, op="sum", dtype=None, async_op=False):
        """In place: every rank ends with the element-wise op over ranks ("sum", "max", "min", "product"; "band",
        "bor", "bxor" on integers). Returns `array`."""
        if op not in _OPS:
            raise ConfigError(f"op {op!r} is not one of sum, max, min, product, band, bor, bxor")
        args = (_buffer(array, True), array.size, _dtype_code(array, dtype), _OPS[op])
        return self._run(lib.weft_all_reduce, args, (array,), array, async_op)

    def reduce_scatter(self, send, recv=None, op="sum", dtype=None, async_op=False):
        """`send` holds size equal chunks along its flat order; rank r gets reduced chunk r (into `recv`)."""
        if send.size % self.size:
            raise ConfigError(f"reduce_scatter: {send.size} elements do not split into {self.size} equal chunks")
        if recv is None:
            recv = np.empty(send.size // self.size, dtype=send.dtype)
        if recv.size * self.size != send.size or recv.dtype != send.dtype:
            raise ConfigError(f"reduce_scatter: recv holds {recv.size} x {recv.dtype}; expected "
                              f"{send.size // self.size} x {send.dtype}")
        if op not in _OPS:
            raise ConfigError(f"op {op!r} is not one of sum, max, min, product, band, bor, bxor")
        args = (_buffer(send, False), _buffer(recv, True), recv.size, _dtype_code(send, dtype), _OPS[op])
        return self._run(lib.weft_reduce_scatter, args, (send, recv), recv, async_op)

    def all_gather(self, send, recv=None, dtype=None, async_op=False):
        """`recv` (made when None: shape (size, *send.shape)) gets every rank's `send` in rank order."""
        if recv is None:
            recv = np.empty((self.size,) + send.shape, dtype=send.dtype)
        if recv.size != send.size * self.size or recv.dtype != send.dtype:
            raise ConfigError(f"all_gather: recv holds {recv.size} x {recv.dtype}; expected "
                              f"{send.size * self.size} x {send.dtype}")
        args = (_buffer(send, False), _buffer(recv, True), send.size, _dtype_code(send, dtype))
        return self._run(lib.weft_all_gather, args, (send, recv), recv, async_op)

    def broadcast(self, array, root=0, dtype=None, async_op=False):
        """In place: every rank ends with root's `array`."""
        args = (_buffer(array, True), array.size, _dtype_code(array, dtype), root)
        return self._run(lib.weft_broadcast, args, (array,), array, async_op)

    def send(self, array, peer, tag=0, dtype=None, async_op=False):
        """To group rank `peer`; returns once delivered (use async_op=True to post a recv after it)."""
        args = (_buffer(array, False), array.size, _dtype_code(array, dtype), peer, tag)
        return self._run(lib.weft_send, args, (array,), None, async_op)

    def recv(self, array, peer, tag=0, dtype=None, async_op=False):
        args = (_buffer(array, True), array.size, _dtype_code(array, dtype), peer, tag)
        return self._run(lib.weft_recv, args, (array,), array, async_op)

    def barrier(self, async_op=False):
        return self._run(lib.weft_barrier, (), (), None, async_op)
