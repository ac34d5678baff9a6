"""One rank of the torch.distributed tests of backend "weft", under mpirun (test_torch_backend.py) or torchrun
(test_torch_torchrun.py; tests/multihost/torchrun_across_hosts_test.sh across emulated hosts; scripts/gpu-check.sh
with CUDA tensors): `ops OUT`, `ddp OUT`, `kill OUT`, `ops_cuda OUT`, `nccl_solo OUT`, ... Each writes what it found to OUT.rankN as JSON; the test judges."""
import json
import os
import signal
import sys
import time
from datetime import timedelta

import torch
import torch.distributed as dist

import weft.torch  # noqa: F401  registers backend "weft"

UNDER_MPIRUN = "OMPI_COMM_WORLD_RANK" in os.environ
RANK = int(os.environ["OMPI_COMM_WORLD_RANK" if UNDER_MPIRUN else "RANK"])  # torchrun sets RANK and WORLD_SIZE
SIZE = int(os.environ["OMPI_COMM_WORLD_SIZE" if UNDER_MPIRUN else "WORLD_SIZE"])
FLOATS = [torch.float32, torch.bfloat16, torch.float16]
DTYPES = FLOATS + [torch.int32, torch.int64]


_GLOO = []  # the gloo group of the job, once started: several modes run in one job


def start(out, timeout_s=60):
    if _GLOO:
        return _GLOO[0]
    if UNDER_MPIRUN:
        # FileStore rendezvous: torch hands the backend the group's store; no MASTER_ADDR needed.
        dist.init_process_group("weft", init_method=f"file://{out}.store", rank=RANK, world_size=SIZE,
                                timeout=timedelta(seconds=timeout_s))
    else:
        # torchrun: env:// with its MASTER_ADDR/PORT; weft's groups are socket groups over torch's TCPStore.
        dist.init_process_group("weft", timeout=timedelta(seconds=timeout_s))
    _GLOO.append(dist.new_group(backend="gloo"))
    return _GLOO[0]


def values(rank, n, dtype):
    """Small integers: exact in every dtype, so sums are exact whatever the order."""
    return ((torch.arange(n) * 7 + 3 * rank) % 23 - 11).to(dtype)


class Checks:
    def __init__(self, gloo):
        self.gloo, self.count, self.failures = gloo, 0, []
        # gloo moves CUDA tensors for some operations only, so with CUDA tensors the exact results alone are judged.
        self.with_gloo = torch.get_default_device().type == "cpu"

    def equal(self, name, got, want):
        self.count += 1
        if not torch.equal(got, want):
            self.failures.append(f"{name}: got {got.tolist()} expected {want.tolist()}")

    def both(self, name, run, want):
        """run(group) -> result tensor, over weft (default group) and gloo; both must equal `want`."""
        self.equal(name, run(None), want)
        if self.with_gloo:
            self.equal(name + " (gloo)", run(self.gloo), want)

    def raises(self, name, run, words):
        self.count += 1
        try:
            run()
        except Exception as error:  # noqa: BLE001  the message is what is judged
            if not all(word in str(error) for word in words):
                self.failures.append(f"{name}: message {error} lacks {words}")
            return
        self.failures.append(f"{name}: did not raise")


def reduced(op, n, dtype):
    stack = torch.stack([values(r, n, torch.float64) for r in range(SIZE)])
    result = {"sum": stack.sum(0), "max": stack.max(0).values, "min": stack.min(0).values,
              "avg": stack.sum(0) / SIZE, "product": stack.prod(0)}.get(op)
    if result is None:  # bitwise: fold the integers themselves
        ints = [values(r, n, torch.int64) for r in range(SIZE)]
        result = ints[0]
        for x in ints[1:]:
            result = {"band": torch.bitwise_and, "bor": torch.bitwise_or, "bxor": torch.bitwise_xor}[op](result, x)
    return result.to(dtype)


def ops(out):
    gloo = start(out)
    c = Checks(gloo)
    n = 12 * SIZE
    ops_by_name = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN,
                   "avg": dist.ReduceOp.AVG, "product": dist.ReduceOp.PRODUCT, "band": dist.ReduceOp.BAND,
                   "bor": dist.ReduceOp.BOR, "bxor": dist.ReduceOp.BXOR}
    for dtype in DTYPES:
        for name, op in ops_by_name.items():
            if name == "avg" and (dtype not in FLOATS):
                continue
            if name == "avg" and dtype != torch.float32:
                continue  # gloo has no AVG; fp32 checks weft's, 16-bit results would round twice
            if name in ("band", "bor", "bxor") and dtype not in (torch.int32, torch.int64):
                continue
            if name == "product" and dtype not in (torch.float32, torch.int32, torch.int64):
                continue  # products of these values need more than a 16-bit significand: gloo rounds at every step
            def run(group, dtype=dtype, op=op):
                t = values(RANK, n, dtype)
                dist.all_reduce(t, op=op, group=group)
                return t
            want = reduced(name, n, dtype)
            if name == "avg":
                c.equal(f"all_reduce avg {dtype}", run(None), want)
            else:
                c.both(f"all_reduce {name} {dtype}", run, want)
        # Non-contiguous: a transposed view reduced in place.
        t = values(RANK, n, dtype).view(SIZE, 12).t()
        dist.all_reduce(t)
        c.equal(f"all_reduce non-contiguous {dtype}", t, reduced("sum", n, dtype).view(SIZE, 12).t())

        def bcast(group, dtype=dtype):
            t = values(RANK, n, dtype)
            dist.broadcast(t, src=SIZE - 1, group=group)
            return t
        c.both(f"broadcast {dtype}", bcast, values(SIZE - 1, n, dtype))

        def gather_into(group, dtype=dtype):
            o = torch.empty(SIZE * n, dtype=dtype)
            dist.all_gather_into_tensor(o, values(RANK, n, dtype), group=group)
            return o
        c.both(f"all_gather_into_tensor {dtype}", gather_into, torch.cat([values(r, n, dtype) for r in range(SIZE)]))

        def scatter_reduce(group, dtype=dtype):
            o = torch.empty(n // SIZE, dtype=dtype)
            dist.reduce_scatter_tensor(o, values(RANK, n, dtype), group=group)
            return o
        chunk = n // SIZE
        c.both(f"reduce_scatter_tensor {dtype}", scatter_reduce, reduced("sum", n, dtype)[RANK * chunk:][:chunk])

    def gather_list(group):
        outs = [torch.empty(5) for _ in range(SIZE)]
        dist.all_gather(outs, values(RANK, 5, torch.float32), group=group)
        return torch.stack(outs)
    c.both("all_gather", gather_list, torch.stack([values(r, 5, torch.float32) for r in range(SIZE)]))

    def reduce_to_root(group):
        t = values(RANK, 9, torch.float32)
        dist.reduce(t, dst=1, group=group)
        return t if RANK == 1 else torch.zeros(0)
    c.both("reduce", reduce_to_root, reduced("sum", 9, torch.float32) if RANK == 1 else torch.zeros(0))

    def gather_to_root(group):
        outs = [torch.empty(4) for _ in range(SIZE)] if RANK == 0 else None
        dist.gather(values(RANK, 4, torch.float32), outs, dst=0, group=group)
        return torch.stack(outs) if RANK == 0 else torch.zeros(0)
    c.both("gather", gather_to_root,
           torch.stack([values(r, 4, torch.float32) for r in range(SIZE)]) if RANK == 0 else torch.zeros(0))

    def scatter_from_root(group):
        t = torch.empty(6)
        dist.scatter(t, [values(r, 6, torch.float32) + 100 for r in range(SIZE)] if RANK == 1 else None, src=1,
                     group=group)
        return t
    c.both("scatter", scatter_from_root, values(RANK, 6, torch.float32) + 100)

    def all_to_all(group):  # uneven: rank r sends r + p + 1 rows to rank p
        send = [torch.full((RANK + p + 1, 2), float(10 * RANK + p)) for p in range(SIZE)]
        out = torch.empty(sum(p + RANK + 1 for p in range(SIZE)), 2)
        dist.all_to_all_single(out, torch.cat(send), [p + RANK + 1 for p in range(SIZE)],
                               [RANK + p + 1 for p in range(SIZE)], group=group)
        return out
    c.both("all_to_all_single", all_to_all,
           torch.cat([torch.full((p + RANK + 1, 2), float(10 * p + RANK)) for p in range(SIZE)]))

    def ring(group):  # send to the next rank, receive from the previous, as a batch of isend/irecv
        got = torch.empty(7, dtype=torch.int64)
        works = dist.batch_isend_irecv([dist.P2POp(dist.isend, values(RANK, 7, torch.int64), (RANK + 1) % SIZE, group),
                                        dist.P2POp(dist.irecv, got, (RANK - 1) % SIZE, group)])
        for work in works:
            work.wait()
        return got
    c.both("send/recv", ring, values((RANK - 1) % SIZE, 7, torch.int64))

    # Data movement in any dtype (as bytes): odd-sized float64 and bool tensors, and torch's object collectives.
    for dtype in (torch.float64, torch.bool, torch.uint8):
        def bcast_any(group, dtype=dtype):
            t = values(RANK, 5, torch.int64).to(dtype)
            dist.broadcast(t, src=1, group=group)
            return t
        c.both(f"broadcast {dtype}", bcast_any, values(1, 5, torch.int64).to(dtype))

        def gather_any(group, dtype=dtype):
            outs = [torch.empty(3, dtype=dtype) for _ in range(SIZE)]
            dist.all_gather(outs, values(RANK, 3, torch.int64).to(dtype), group=group)
            return torch.stack(outs)
        c.both(f"all_gather {dtype}", gather_any, torch.stack([values(r, 3, torch.int64).to(dtype) for r in range(SIZE)]))
    objects = [{"from": RANK, "text": "x" * (RANK + 3)}]
    dist.broadcast_object_list(objects, src=SIZE - 1)
    c.count += 1
    if objects != [{"from": SIZE - 1, "text": "x" * (SIZE + 2)}]:
        c.failures.append(f"broadcast_object_list: {objects}")
    gathered = [None] * SIZE
    dist.all_gather_object(gathered, ("rank", RANK, "y" * RANK))
    c.count += 1
    if gathered != [("rank", r, "y" * r) for r in range(SIZE)]:
        c.failures.append(f"all_gather_object: {gathered}")

    dist.barrier()
    work = dist.all_reduce(values(RANK, 3, torch.float32), async_op=True)
    c.equal("Work future", work.get_future().wait()[0], reduced("sum", 3, torch.float32))
    c.raises("bitwise float", lambda: dist.all_reduce(torch.ones(2), op=dist.ReduceOp.BAND),
             ["weft", "all_reduce", "int32 or int64"])
    c.raises("float64", lambda: dist.all_reduce(torch.ones(2, dtype=torch.float64)), ["weft", "all_reduce", "Double"])
    # A group of all but the last rank (on 2 ranks: of rank 1 alone): an all_reduce and an all_gather in it are exact
    # and equal gloo's in the same group.
    members = list(range(SIZE - 1)) if SIZE > 2 else [1]
    smaller = dist.new_group(members, backend="weft")
    smaller_gloo = dist.new_group(members, backend="gloo")
    if RANK in members:
        def in_smaller(group):
            t = values(RANK, 10, torch.float32)
            dist.all_reduce(t, group=group)
            outs = torch.empty(len(members) * 10)
            dist.all_gather_into_tensor(outs, values(RANK, 10, torch.float32), group=group)
            return torch.cat([t, outs])
        want = torch.cat([sum(values(r, 10, torch.float32) for r in members),
                          torch.cat([values(r, 10, torch.float32) for r in members])])
        c.equal("new_group", in_smaller(smaller), want)
        if c.with_gloo:
            c.equal("new_group (gloo)", in_smaller(smaller_gloo), want)
    else:
        c.count += 2 if c.with_gloo else 1  # every rank reports the same number of checks
    dist.barrier()
    return {"checked": c.count, "failures": c.failures}


def ops_cuda(out):
    """`ops` on CUDA tensors (torch's default device; every rank on GPU 0), which the backend moves through host
    copies: each result against the exact one."""
    torch.set_default_device("cuda")
    return ops(out)


def nccl_solo(out):
    """One rank on CUDA tensors, which the backend carries over libweft's NCCL group (NCCL refuses two ranks on one
    GPU): each collective NCCL carries against its exact result, issued on a side stream right after slow work that
    produces its input there (the operation must start after it), and a bitwise reduction (host copies) after them."""
    start(out)
    c = Checks(None)
    c.with_gloo = False
    n = 1 << 16
    side = torch.cuda.Stream()
    busy = torch.empty(1 << 26, device="cuda")
    for dtype in DTYPES:
        with torch.cuda.stream(side):
            t = torch.zeros(n, dtype=dtype, device="cuda")
            for _ in range(50):
                busy.mul_(0.5)  # milliseconds of work queued before the input is written
            t.copy_(values(RANK, n, dtype).cuda())
            work = dist.all_reduce(t, async_op=True)
        work.wait()
        torch.cuda.synchronize()
        c.equal(f"nccl all_reduce after the side stream's work {dtype}", t.cpu(), reduced("sum", n, dtype))
        for name, op in (("max", dist.ReduceOp.MAX), ("min", dist.ReduceOp.MIN)):
            t = values(RANK, n, dtype).cuda()
            dist.all_reduce(t, op=op)
            c.equal(f"nccl all_reduce {name} {dtype}", t.cpu(), reduced(name, n, dtype))
        t = values(RANK, n, dtype).cuda()
        dist.broadcast(t, src=0)
        c.equal(f"nccl broadcast {dtype}", t.cpu(), values(0, n, dtype))
        o = torch.empty(SIZE * n, dtype=dtype, device="cuda")
        dist.all_gather_into_tensor(o, values(RANK, n, dtype).cuda())
        c.equal(f"nccl all_gather_into_tensor {dtype}", o.cpu(), values(0, n, dtype))
        o = torch.empty(n, dtype=dtype, device="cuda")
        dist.reduce_scatter_tensor(o, values(RANK, n, dtype).cuda())
        c.equal(f"nccl reduce_scatter_tensor {dtype}", o.cpu(), reduced("sum", n, dtype))
    t = values(RANK, n, torch.float32).cuda()
    dist.all_reduce(t, op=dist.ReduceOp.AVG)
    torch.cuda.synchronize()
    c.equal("nccl all_reduce avg", t.cpu(), reduced("avg", n, torch.float32))
    t = values(RANK, 8, torch.int32).cuda()
    dist.all_reduce(t, op=dist.ReduceOp.BAND)  # not NCCL's: through host copies
    c.equal("bitwise all_reduce through host copies", t.cpu(), reduced("band", 8, torch.int32))
    return {"checked": c.count, "failures": c.failures}


def train(model, optimizer, steps):
    """`steps` steps of next-token-like loss on this rank's own random tokens (the same for every run)."""
    data = torch.Generator().manual_seed(1 + RANK)
    for _ in range(steps):
        tokens = torch.randint(0, 64, (4, 16), generator=data)
        loss = torch.nn.functional.cross_entropy(model(tokens).flatten(0, 1), tokens.roll(1, 1).flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def ddp(out, optimizer_name="adamw", steps=10):
    """The same model, seed and per-rank data under DDP over weft and over gloo; parameters after `steps`. AdamW
    divides by the gradient's running RMS, which turns rounding differences of near-zero gradients into whole
    steps: with sums in different orders (3 ranks), SGD shows how far apart the reductions themselves are."""
    gloo = start(out)
    results = []
    for group in (None, gloo):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Embedding(64, 32),
                                    torch.nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True),
                                    torch.nn.Linear(32, 64))
        ddp_model = torch.nn.parallel.DistributedDataParallel(model, process_group=group, bucket_cap_mb=0.01)
        optimizer = (torch.optim.AdamW(ddp_model.parameters(), lr=1e-2) if optimizer_name == "adamw"
                     else torch.optim.SGD(ddp_model.parameters(), lr=0.1, momentum=0.9))
        train(ddp_model, optimizer, steps)
        results.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    weft_params, gloo_params = results
    difference = (weft_params - gloo_params).abs().max().item()
    scale = gloo_params.abs().max().item()
    return {"identical": bool(torch.equal(weft_params, gloo_params)), "max_abs_difference": difference,
            "max_abs": scale, "steps": steps}


def fsdp(out, steps=5):
    """FSDP2 (`fully_shard` per block, then the root) over a 1-D mesh of weft's group and of gloo's; the full
    parameters after `steps` AdamW steps."""
    from torch.distributed.device_mesh import DeviceMesh
    from torch.distributed.fsdp import fully_shard

    gloo = start(out)
    results = []
    for group in (dist.group.WORLD, gloo):
        mesh = DeviceMesh.from_group(group, "cpu")
        torch.manual_seed(0)
        blocks = [torch.nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True) for _ in range(2)]
        model = torch.nn.Sequential(torch.nn.Embedding(64, 32), *blocks, torch.nn.Linear(32, 64))
        for block in blocks:
            fully_shard(block, mesh=mesh)
        fully_shard(model, mesh=mesh)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        train(model, optimizer, steps)
        results.append(torch.cat([p.full_tensor().detach().flatten() for p in model.parameters()]))
    weft_params, gloo_params = results
    return {"identical": bool(torch.equal(weft_params, gloo_params)),
            "max_abs_difference": (weft_params - gloo_params).abs().max().item(), "steps": steps}


def pipeline(out, schedule_name, steps=3):
    """torch.distributed.pipelining, 2 stages (rank 0: embedding and a block; rank 1: a block and the head), 4
    micro-batches, over weft's group and over gloo's; this stage's parameters after `steps` SGD steps."""
    from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe

    gloo = start(out)
    schedule_class = {"gpipe": ScheduleGPipe, "1f1b": Schedule1F1B}[schedule_name]
    results = []
    for group in (dist.group.WORLD, gloo):
        torch.manual_seed(0)
        layers = [torch.nn.Embedding(64, 32), torch.nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True),
                  torch.nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True), torch.nn.Linear(32, 64)]
        module = torch.nn.Sequential(*layers[2 * RANK:2 * RANK + 2])
        hidden = torch.empty(2, 16, 32, requires_grad=True)
        stage = PipelineStage(module, RANK, 2, torch.device("cpu"),
                              input_args=torch.empty(2, 16, dtype=torch.int64) if RANK == 0 else hidden,
                              output_args=hidden if RANK == 0 else torch.empty(2, 16, 64), group=group)
        loss = lambda logits, target: torch.nn.functional.cross_entropy(logits.flatten(0, 1), target.flatten())  # noqa
        schedule = schedule_class(stage, n_microbatches=4, loss_fn=loss)
        optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
        data = torch.Generator().manual_seed(1)
        for _ in range(steps):
            tokens = torch.randint(0, 64, (8, 16), generator=data)
            optimizer.zero_grad()
            if RANK == 0:
                schedule.step(tokens)
            else:
                schedule.step(target=tokens.roll(1, 1))
            optimizer.step()
        results.append(torch.cat([p.detach().flatten() for p in module.parameters()]))
    return {"identical": bool(torch.equal(*results)), "max_abs_difference": (results[0] - results[1]).abs().max().item()}


def bulk(out, mib="16"):
    """One all_reduce of MIB MiB of float32 over weft alone, against the exact sum: the multihost test counts the bytes
    that crossed the emulated link while it ran."""
    start(out)
    n = int(mib) * (1 << 20) // 4
    t = values(RANK, n, torch.float32)
    dist.all_reduce(t)
    return {"bulk_exact": bool(torch.equal(t, reduced("sum", n, torch.float32))), "bulk_bytes": 4 * n}


def kill(out):
    """The last rank dies (SIGKILL) before an all_reduce; the others must raise within the group's timeout."""
    start(out, timeout_s=5)
    t = torch.ones(1000)
    dist.all_reduce(t)
    if RANK == SIZE - 1:
        os.kill(os.getpid(), signal.SIGKILL)
    started = time.monotonic()
    try:
        for _ in range(3):
            dist.all_reduce(t)
    except Exception as error:  # noqa: BLE001
        return {"raised": type(error).__name__, "message": str(error), "seconds": time.monotonic() - started}
    return {"raised": None}


if __name__ == "__main__":
    # MODE is one mode or several joined by "+", each with its arguments after ":" (e.g. "ops+ddp:sgd"): they run one
    # after another in the same job and their results are merged.
    modes, out = sys.argv[1], sys.argv[2]
    result = {}
    for mode in modes.split("+"):
        name, *args = mode.split(":")
        result.update({"ops": ops, "ops_cuda": ops_cuda, "nccl_solo": nccl_solo, "ddp": ddp, "fsdp": fsdp, "pipeline": pipeline, "bulk": bulk,
                       "kill": kill}[name](out, *args))
    with open(f"{out}.rank{RANK}", "w") as handle:
        json.dump(result, handle)
    sys.stdout.flush()
    if modes == "kill":
        os._exit(0)  # the group cannot be ended with a dead peer
    dist.destroy_process_group()
