"""Lifetime of the library's handles from Python: every live object is closed, then MPI ended, at exit."""
import atexit
import weakref

from ._native import lib

_live = weakref.WeakSet()


def track(owner):
    _live.add(owner)


@atexit.register
def _close_all():
    # MPI must end after every handle that holds it, and under mpirun every process must end it (or the job fails).
    for owner in sorted(list(_live), key=lambda o: o._close_order):
        owner.close()
    lib.weft_finalize()


class Owner:
    """A Python object that owns one library handle (self._handle): freed once, by close(), a `with` block, garbage
    collection or exit (in _close_order). Subclasses name the library's destroy function in _destroy."""

    _close_order = 0
    _destroy = ""

    def _forget(self):
        """What else the object lets go of with its handle."""

    def close(self):
        if getattr(self, "_handle", None):
            getattr(lib, self._destroy)(self._handle)
            self._handle = None
            self._forget()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()
