"""What the torchrun tests require of torch_rank_main.py's results, shared by the one-host test (test_torch_torchrun.py)
and the emulated-hosts one (tests/multihost/torchrun_across_hosts_test.sh, through the command line at the end)."""
import pathlib
import sys

from conftest import rank_results

OPS_CHECKS = 115  # what torch_rank_main.ops counts on every rank, whatever the size


def ops_mode(ranks):
    """torch_rank_main's modes that check every operation and DDP on `ranks` ranks. Two ranks: sums of two addends do
    not depend on the order, so AdamW's parameters are bit-identical to gloo's. More: weft adds in rank order, gloo in
    its own, so SGD's parameters (momentum 0.9, 10 steps) agree to fp32 rounding, within 1e-5 of the largest one."""
    return "ops+ddp" if ranks == 2 else "ops+ddp:sgd"


def check_every_operation_and_ddp(results, ranks, log):
    assert sorted(results) == list(range(ranks)), log
    for result in results.values():
        assert result["failures"] == [], result["failures"]
        assert result["checked"] == OPS_CHECKS, result
        if ranks == 2:
            assert result["identical"], result
        else:
            assert result["max_abs_difference"] <= 1e-5 * max(1.0, result["max_abs"]), result


def check_bulk(results, ranks, log):
    """torch_rank_main.bulk: its all_reduce's sum exact on every rank."""
    assert sorted(results) == list(range(ranks)), log
    for result in results.values():
        assert result["bulk_exact"], result


def check_survivors_of_a_kill(results, ranks, log, within_s=5):
    """torch_rank_main.kill: the last rank died; every other one raised within the group's timeout, naming it."""
    victim = ranks - 1
    assert sorted(results) == list(range(victim)), log  # the victim wrote nothing
    for survivor in results.values():
        assert survivor["raised"] is not None, survivor
        assert survivor["seconds"] < within_s, survivor
        assert f"rank {victim}" in survivor["message"] and "all_reduce" in survivor["message"], survivor["message"]


if __name__ == "__main__":
    # torchrun_checks.py CHECKS RESULT_DIR RANKS LOG: CHECKS (ops, bulk, kill, joined by "+") on the result.rank<R>
    # files in RESULT_DIR of a run started elsewhere; LOG's end is shown when ranks are missing. Exit 1 on a failure.
    checks, directory, ranks, log = sys.argv[1], pathlib.Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    found = rank_results(directory, ranks)
    tail = pathlib.Path(log).read_text(errors="replace")[-8000:]
    for check in checks.split("+"):
        try:
            {"ops": check_every_operation_and_ddp, "bulk": check_bulk, "kill": check_survivors_of_a_kill}[check](
                found, ranks, tail)
        except AssertionError as error:
            sys.exit(f"FAIL: check {check} on {ranks} ranks: {error}")
    print(f"{checks}: every rank's results pass ({sorted(found)})")
