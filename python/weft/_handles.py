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
