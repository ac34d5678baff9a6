"""weft: train with weft's runtime from Python, and run its collectives on NumPy arrays.

    import weft
    trainer = weft.Trainer("configs/tiny.yaml", {"train.steps": 20})
    for metrics in trainer.train():
        print(metrics["step"], metrics["loss"])

Runs as one process, or as every rank of `mpirun -np N python script.py`.
"""
import ctypes

from ._native import lib
from .comm import Communicator, FileStore, Work
from .errors import ConfigError, PeerFailure, WeftError
from .trainer import Trainer, inspect_checkpoint, plan

__all__ = ["Trainer", "Communicator", "FileStore", "Work", "WeftError", "ConfigError", "PeerFailure", "plan",
           "inspect_checkpoint", "set_log_callback", "__version__"]

__version__ = lib.weft_version().decode()

_LOG_FN = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
_log_callback = None  # referenced here so ctypes keeps the trampoline alive


def set_log_callback(function):
    """function(level, message) receives weft's log lines instead of stderr (levels: 1 debug, 2 info, 3 warning,
    4 error); None restores stderr. It may be called from weft's threads."""
    global _log_callback
    if function is None:
        _log_callback = None
        lib.weft_set_log_callback(None, None)
        return
    _log_callback = _LOG_FN(lambda level, message, user: function(level, message.decode(errors="replace")))
    lib.weft_set_log_callback(ctypes.cast(_log_callback, ctypes.c_void_p), None)
