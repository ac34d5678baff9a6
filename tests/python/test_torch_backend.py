"""torch.distributed over backend "weft" (weft.torch) under mpirun: every operation against exact results and gloo,
DDP against DDP over gloo, and a killed rank. The ranks run torch_rank_main.py."""
import os

import pytest

from conftest import run_ranks

# The extension's build directory travels to the ranks when the environment chooses one.
MPIRUN_ARGS = ["-x", "WEFT_TORCH_BUILD_DIR"] if os.environ.get("WEFT_TORCH_BUILD_DIR") else []


def run(tmp_path, ranks, *args, **kwargs):
    mpirun_args = MPIRUN_ARGS + kwargs.pop("mpirun_args", [])
    return run_ranks(tmp_path, ranks, *args, script="torch_rank_main.py", mpirun_args=mpirun_args, **kwargs)


@pytest.mark.parametrize("ranks", [2, 3, 4])
def test_every_operation_matches_the_exact_result_and_gloo(tmp_path, ranks):
    done, results = run(tmp_path, ranks, "ops")
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(results) == list(range(ranks)), done.stdout + done.stderr
    for result in results.values():
        assert result["failures"] == [], result["failures"]
        assert result["checked"] == 115


def test_ddp_trains_the_same_parameters_as_over_gloo(tmp_path):
    # Two ranks: a sum of two addends does not depend on the order, so DDP's averaged gradients, and hence the
    # parameters after 10 AdamW steps, are bit-identical to gloo's.
    done, results = run(tmp_path, 2, "ddp")
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(results) == [0, 1], done.stdout + done.stderr
    for result in results.values():
        assert result["identical"], result


def test_ddp_with_three_ranks_is_within_fp32_rounding_of_gloo(tmp_path):
    # Three addends: weft adds in rank order, gloo in its own, so the parameters after 10 SGD steps (momentum 0.9)
    # agree to fp32 rounding: within 1e-5 of the largest parameter.
    done, results = run(tmp_path, 3, "ddp:sgd")
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(results) == [0, 1, 2]
    for result in results.values():
        assert result["max_abs_difference"] <= 1e-5 * max(1.0, result["max_abs"]), result


def test_a_killed_rank_makes_the_survivors_raise_naming_it_within_the_timeout(tmp_path):
    done, results = run(tmp_path, 3, "kill", mpirun_args=["--mca", "orte_abort_on_non_zero_status", "0"],
                        timeout=120)
    assert sorted(results) == [0, 1], done.stdout + done.stderr  # the victim wrote nothing
    for survivor in results.values():
        assert survivor["raised"] is not None, survivor
        assert survivor["seconds"] < 5 + 5, survivor  # the group's timeout is 5 s
        assert "rank 2" in survivor["message"] and "all_reduce" in survivor["message"], survivor["message"]


def test_fsdp2_trains_the_same_parameters_as_over_gloo(tmp_path):
    # fully_shard per block: all_gather_into_tensor and reduce_scatter_tensor of two addends, bit-identical to gloo.
    done, results = run(tmp_path, 2, "fsdp")
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(results) == [0, 1]
    for result in results.values():
        assert result["identical"], result


@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
def test_pipelining_trains_the_same_stages_as_over_gloo(tmp_path, schedule):
    # 2 stages, 4 micro-batches: activations and gradients travel by send/recv, so both stages are bit-identical.
    done, results = run(tmp_path, 2, f"pipeline:{schedule}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(results) == [0, 1]
    for result in results.values():
        assert result["identical"], result
