"""One rank of the multi-process Python tests (run under mpirun by test_ranks.py): `train OUT [KEY=VALUE...]`,
`kill OUT`, `comm OUT` and `gradients OUT [KEY=VALUE...]`. Each writes what it found to OUT.rankN as JSON; the test reads and judges."""
import json
import os
import signal
import sys
import time

import numpy as np

import weft

TINY = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "tiny.yaml")


def train(overrides):
    trainer = weft.Trainer(TINY, dict(item.split("=", 1) for item in overrides))
    return {"losses": [m["loss"] for m in trainer.train()], "world_size": trainer.world_size}


def kill():
    """Rank 1 dies (SIGKILL) before step 3; the survivor must raise PeerFailure within comm.timeout_s."""
    trainer = weft.Trainer(TINY, {"train.steps": 50, "comm.timeout_s": 5})
    trainer.step()
    trainer.step()
    if trainer.rank == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    started = time.monotonic()
    try:
        trainer.step()
        trainer.step()
    except weft.PeerFailure as failure:
        return {"raised": "PeerFailure", "message": str(failure), "exit_code": failure.exit_code,
                "seconds": time.monotonic() - started}
    return {"raised": None}


def bf16_bits(values):
    """fp32 -> bf16 bits, round to nearest even (as weft's float_to_bf16 for finite values)."""
    bits = values.astype(np.float32).view(np.uint32)
    return ((bits + (0x7FFF + ((bits >> 16) & 1))) >> 16).astype(np.uint16)


def bf16_values(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def rank_data(rank, count, kind):
    """Rank `rank`'s input: a fixed seed per rank, values that round differently in each dtype."""
    rng = np.random.default_rng(1000 + rank)
    if kind in ("int32", "int64"):
        return rng.integers(-1000, 1000, count).astype(kind)
    values = rng.standard_normal(count).astype(np.float32) * 3.0
    return bf16_bits(values) if kind == "bfloat16" else values.astype(kind)


def expected_reduce(inputs, kind, op):
    """weft's promise: fold left in rank order, floats in fp32 rounded once to the dtype, integers exactly."""
    widen = (lambda x: bf16_values(x)) if kind == "bfloat16" else (lambda x: x.astype(np.float32)) \
        if kind in ("float16", "float32") else (lambda x: x.copy())
    acc = widen(inputs[0])
    for x in inputs[1:]:
        acc = {"sum": np.add, "max": np.maximum, "min": np.minimum, "product": np.multiply, "band": np.bitwise_and,
               "bor": np.bitwise_or, "bxor": np.bitwise_xor}[op](acc, widen(x))
    if kind == "bfloat16":
        return bf16_bits(acc)
    return acc.astype(kind)


def comm():
    world = weft.Communicator.world(timeout_s=60)
    n, me = world.size, world.rank
    checked = 0
    for kind in ("float32", "float16", "bfloat16", "int32", "int64"):
        dtype = "bfloat16" if kind == "bfloat16" else None
        count = 1_000_003 if kind == "float32" else 4099  # one large buffer (several segments), others odd-sized
        inputs = [rank_data(r, count, kind) for r in range(n)]
        for op in ("sum", "max", "min", "product") + (("band", "bor", "bxor") if kind.startswith("int") else ()):
            data = inputs[me].copy()
            world.all_reduce(data, op=op, dtype=dtype)
            assert np.array_equal(data, expected_reduce(inputs, kind, op)), (kind, op)
            checked += 1
        full = [rank_data(r, count * n, kind) for r in range(n)]
        chunk = world.reduce_scatter(full[me], dtype=dtype)
        assert np.array_equal(chunk, expected_reduce(full, kind, "sum")[me * count:(me + 1) * count]), kind
        gathered = world.all_gather(inputs[me], dtype=dtype)
        assert np.array_equal(gathered, np.stack(inputs)), kind
        data = inputs[me].copy()
        world.broadcast(data, root=n - 1, dtype=dtype)
        assert np.array_equal(data, inputs[n - 1]), kind
        checked += 3
    # Asynchronous: a ring of send/recv posted together, then waited.
    out = np.full(77, me, dtype=np.int64)
    received = np.zeros(77, dtype=np.int64)
    sending = world.send(out, (me + 1) % n, tag=3, async_op=True)
    receiving = world.recv(received, (me - 1) % n, tag=3, async_op=True)
    assert receiving.wait() is received and sending.wait() is None
    assert np.all(received == (me - 1) % n)
    world.barrier()
    halves = world.split(me % 2)
    members = np.ones(1, dtype=np.int32)
    halves.all_reduce(members)
    assert members[0] == len(range(me % 2, n, 2))
    return {"checked": checked + 2, "size": n}


def gradients(out, overrides):
    """One backward; every rank reads every gradient (a collective under ZeRO 1-3) into OUT.rankN.npz, then a
    gradient written on every rank (the same values) must read back as written, and apply must run."""
    trainer = weft.Trainer(TINY, dict(item.split("=", 1) for item in overrides))
    trainer.backward()
    read = trainer.gradients()
    np.savez(f"{out}.rank{trainer.rank}.npz", **read)
    name = trainer.names()[-1]
    written = np.random.default_rng(5).standard_normal(trainer.shape(name)).astype(np.float32) * 1e-3
    trainer.set_gradient(name, written)
    back = trainer.get_gradient(name)
    metrics = trainer.apply()
    return {"written_reads_back": bool(np.array_equal(back, written)), "loss": metrics["loss"],
            "world_size": trainer.world_size}


if __name__ == "__main__":
    command, out = sys.argv[1], sys.argv[2]
    result = {"train": lambda: train(sys.argv[3:]), "kill": kill, "comm": comm,
              "gradients": lambda: gradients(out, sys.argv[3:])}[command]()
    rank = int(os.environ.get("OMPI_COMM_WORLD_RANK", "0"))
    with open(f"{out}.rank{rank}", "w") as f:
        json.dump(result, f)
