"""weft.Trainer: one rank of a training job inside this Python process, over libweft's C API."""
import ctypes
import json
import os

import numpy as np

from . import _handles
from ._native import check, encode, lib, string_array, take_string
from .errors import ConfigError

_DTYPES = {0: "float32", 1: "bfloat16", 2: "float16", 3: "int32", 4: "int64"}


def _config_source(config):
    """(path, text): a dict is a config as data, a str with a newline YAML text, any other str or path a file."""
    if isinstance(config, dict):
        return None, json.dumps(config)  # JSON is YAML
    if isinstance(config, str) and "\n" in config:
        return None, config
    if isinstance(config, (str, os.PathLike)):
        return os.fspath(config), None
    raise TypeError(f"config must be a path, YAML text or a dict, not {type(config).__name__}")


def _override_text(key, value):
    if isinstance(value, bool):
        value = "true" if value else "false"
    return f"{key}={value}"


class Trainer(_handles.Owner):
    """A trainer for this process's rank of the job (rank and world size from mpirun, srun or PMI; else one rank).

    `config` is a YAML path, YAML text or a dict; `overrides` maps dotted keys to values as `weft train --set` does.
    Creating, stepping, saving and loading are collective: every rank of the job makes the same calls in order.
    """

    _close_order = 1
    _destroy = "weft_trainer_destroy"  # views from parameters() and gradients() become invalid

    def __init__(self, config, overrides=None):
        path, text = _config_source(config)
        items = [_override_text(k, v) for k, v in (overrides or {}).items()]
        array, count = string_array(items)
        handle = ctypes.c_void_p()
        check(lib.weft_trainer_create(encode(path), encode(text), array, count, ctypes.byref(handle)))
        self._handle = handle
        _handles.track(self)
        rank, world = ctypes.c_int(), ctypes.c_int()
        check(lib.weft_trainer_rank(handle, ctypes.byref(rank), ctypes.byref(world)))
        self.rank, self.world_size = rank.value, world.value

    @property
    def handle(self):
        if not self._handle:
            raise ValueError("this weft.Trainer is closed")
        return self._handle

    @property
    def steps_done(self):
        """The last completed step (0 before the first, or the step load() restored)."""
        done = ctypes.c_int()
        check(lib.weft_trainer_steps(self.handle, ctypes.byref(done), None))
        return done.value

    @property
    def planned_steps(self):
        """train.steps of the config."""
        planned = ctypes.c_int()
        check(lib.weft_trainer_steps(self.handle, None, ctypes.byref(planned)))
        return planned.value

    def step(self):
        """Runs the next optimizer step; returns its metrics (the object `weft train --metrics` writes, with
        "val_loss" on the steps train.eval_every evaluates at)."""
        check(lib.weft_trainer_step(self.handle))
        return self._metrics()

    def backward(self):
        """The first half of step(): forward, backward and the gradient reduction of the next step's batch
        (collective). The gradients are then final: read them (gradients(), get_gradient()) or replace them
        (set_gradient()) before apply()."""
        check(lib.weft_trainer_backward(self.handle))

    def apply(self):
        """The second half of step(): clipping of the gradients as they are now, the optimizer update, evaluation and
        checkpoints as step() (collective); returns the step's metrics."""
        check(lib.weft_trainer_apply(self.handle))
        return self._metrics()

    def _metrics(self):
        text = ctypes.c_char_p()
        check(lib.weft_trainer_metrics(self.handle, ctypes.byref(text)))
        return json.loads(text.value)

    def train(self, steps=None):
        """Yields the metrics of each step: `steps` more steps, or up to train.steps."""
        count = self.planned_steps - self.steps_done if steps is None else steps
        for _ in range(count):
            yield self.step()

    def names(self):
        """The parameters this rank holds (its pipeline stage, each its tensor-parallel part), in model order."""
        count = ctypes.c_size_t()
        check(lib.weft_trainer_tensor_count(self.handle, ctypes.byref(count)))
        out = []
        for i in range(count.value):
            name = ctypes.c_char_p()
            check(lib.weft_trainer_tensor_name(self.handle, i, ctypes.byref(name)))
            out.append(name.value.decode())
        return out

    def shape(self, name):
        ndim = ctypes.c_int()
        dims = (ctypes.c_int64 * 8)()
        check(lib.weft_trainer_tensor_shape(self.handle, name.encode(), ctypes.byref(ndim), dims))
        return tuple(dims[: ndim.value])

    def dtype(self, name):
        """The dtype the parameter is stored in ("float32", "bfloat16" or "float16")."""
        code = ctypes.c_int()
        check(lib.weft_trainer_tensor_dtype(self.handle, name.encode(), ctypes.byref(code)))
        return _DTYPES[code.value]

    def _view(self, getter, name):
        pointer = ctypes.c_void_p()
        check(getter(self.handle, name.encode(), ctypes.byref(pointer)))
        shape = self.shape(name)
        buffer = (ctypes.c_float * int(np.prod(shape))).from_address(pointer.value)
        buffer._trainer = self  # the view keeps the trainer (and so its storage) alive
        return np.frombuffer(buffer, dtype=np.float32).reshape(shape)

    def parameters(self):
        """{name: zero-copy float32 NumPy view of weft's own storage}: writing into a view changes what is trained.
        Needs parameters held whole in fp32 host memory (not ZeRO 3, not bf16/fp16): else ConfigError says why and
        get_parameter() copies."""
        return {name: self._view(lib.weft_trainer_parameter_data, name) for name in self.names()}

    def gradients(self, copy=False):
        """{name: the last backward's reduced gradient} as float32 arrays. Zero-copy views of weft's storage where it
        holds them whole in fp32 host memory (parallel.zero = 0, fp32, CPU, no offload), else copies (get_gradient:
        collective under ZeRO 1-3, so every data-parallel rank calls it). copy=True always copies. To change a
        gradient between backward() and apply(), use set_gradient() (writing into a view also works)."""
        names = self.names()
        if not copy and names:
            try:
                first = self._view(lib.weft_trainer_gradient_data, names[0])
            except ConfigError:
                pass  # the same reason holds for every tensor of this trainer: copy them all
            else:
                return {names[0]: first, **{n: self._view(lib.weft_trainer_gradient_data, n) for n in names[1:]}}
        return {name: self.get_gradient(name) for name in names}

    def get_parameter(self, name):
        """A float32 copy of this rank's part of parameter `name` (collective under ZeRO 3)."""
        out = np.empty(self.shape(name), dtype=np.float32)
        check(lib.weft_trainer_get_parameter(self.handle, name.encode(), out.ctypes.data, out.size))
        return out

    def set_parameter(self, name, values):
        """Sets parameter `name` (every data-parallel rank must set the same values)."""
        values = np.ascontiguousarray(values, dtype=np.float32)
        check(lib.weft_trainer_set_parameter(self.handle, name.encode(), values.ctypes.data, values.size))

    def get_gradient(self, name):
        """A float32 copy of the last backward's gradient of `name` (this rank's part; the mean loss's gradient before
        clipping). Collective over the data-parallel group under ZeRO 1-3."""
        out = np.empty(self.shape(name), dtype=np.float32)
        check(lib.weft_trainer_get_gradient(self.handle, name.encode(), out.ctypes.data, out.size))
        return out

    def set_gradient(self, name, values):
        """Replaces the gradient of `name` between backward() and apply(); every data-parallel rank passes the same
        whole tensor (this rank's part of it under tensor parallelism). A wrong shape raises ConfigError."""
        values = np.asarray(values, dtype=np.float32)
        shape = self.shape(name)
        if values.shape != shape:
            raise ConfigError(f"set_gradient({name!r}): an array of shape {values.shape} for a gradient of shape "
                              f"{shape}")
        values = np.ascontiguousarray(values)
        check(lib.weft_trainer_set_gradient(self.handle, name.encode(), values.ctypes.data, values.size))

    def save(self, directory):
        """Saves a checkpoint of the last completed step under `directory` (as checkpoint.dir does)."""
        check(lib.weft_trainer_save(self.handle, encode(os.fspath(directory))))

    def load(self, path):
        """Restores a checkpoint (or a checkpoint directory's newest); returns its step."""
        step = ctypes.c_int()
        check(lib.weft_trainer_load(self.handle, encode(os.fspath(path)), ctypes.byref(step)))
        return step.value

    def plan(self):
        """`weft plan --json` for this trainer's config and world size."""
        text = ctypes.c_void_p()
        check(lib.weft_trainer_plan(self.handle, ctypes.byref(text)))
        return json.loads(take_string(text))


def plan(config, world_size, overrides=None):
    """`weft plan CONFIG -n WORLD_SIZE --json` as a dict, without creating a trainer."""
    path, text = _config_source(config)
    array, count = string_array([_override_text(k, v) for k, v in (overrides or {}).items()])
    out = ctypes.c_void_p()
    check(lib.weft_plan(encode(path), encode(text), array, count, world_size, ctypes.byref(out)))
    return json.loads(take_string(out))


def inspect_checkpoint(path):
    """What a checkpoint holds (step, model, layout, files, tensors), after verifying its checksums."""
    out = ctypes.c_void_p()
    check(lib.weft_checkpoint_inspect(encode(os.fspath(path)), ctypes.byref(out)))
    return json.loads(take_string(out))
