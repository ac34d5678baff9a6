"""The Python package under mpirun: several ranks train like `weft train`, a dead peer raises PeerFailure in the
survivors, and Communicator results are exact for 2 and 3 ranks; and processes without mpirun form a socket group."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import weft
from conftest import MPIRUN, SOURCE, TINY, cli_losses, run_ranks


def test_two_rank_python_trainer_has_the_loss_curve_of_weft_train(tmp_path):
    overrides = {"train.steps": 10, "parallel.zero": 1}
    done, results = run_ranks(tmp_path, 2, "train", *(f"{k}={v}" for k, v in overrides.items()))
    assert done.returncode == 0, done.stderr
    assert results[0]["world_size"] == 2
    assert results[0]["losses"] == cli_losses(tmp_path, 2, overrides)  # bit for bit: floats compared exactly
    assert results[1]["losses"] == results[0]["losses"]


@pytest.mark.parametrize("zero", [1, 3])
def test_gradients_read_on_two_ranks_under_zero_equal_the_one_rank_zero_0_gradient(tmp_path, zero):
    # tiny.yaml: global batch 16, so each rank takes 8 of the same 16 samples a single rank reads.
    done, results = run_ranks(tmp_path, 2, "gradients", f"parallel.zero={zero}", "train.steps=2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert all(results[r]["written_reads_back"] for r in (0, 1)), results
    reference = weft.Trainer(TINY, {"train.steps": 2})
    reference.backward()
    for rank in (0, 1):
        with np.load(tmp_path / f"result.rank{rank}.npz") as got:
            for name, want in reference.gradients().items():
                # fp32, the same terms in another grouping: 1e-5 of the tensor's scale (contract.md Numerics)
                assert np.abs(got[name] - want).max() <= 1e-5 * np.abs(want).max(), (rank, name)


def test_a_peer_killed_mid_step_raises_peer_failure_in_the_survivor_within_the_timeout(tmp_path):
    # Survivors report for themselves instead of being killed by mpirun when a rank dies.
    done, results = run_ranks(tmp_path, 2, "kill", mpirun_args=["--mca", "orte_abort_on_non_zero_status", "0"],
                              timeout=120)
    survivor = results.get(0)
    assert survivor is not None, done.stdout + done.stderr
    assert survivor["raised"] == "PeerFailure", survivor
    assert survivor["exit_code"] == 3
    assert survivor["seconds"] < 5 + 3, survivor  # comm.timeout_s = 5, plus the step that was running
    assert "rank 1" in survivor["message"], survivor["message"]
    assert 1 not in results  # the victim wrote nothing


@pytest.mark.parametrize("ranks", [2, 3])
def test_communicator_results_are_exact(tmp_path, ranks):
    done, results = run_ranks(tmp_path, ranks, "comm")
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(results) == list(range(ranks))
    assert all(result == {"checked": 43, "size": ranks} for result in results.values()), results


def test_the_python_example_runs_under_mpirun_with_two_ranks(tmp_path):
    command = MPIRUN + ["-np", "2", sys.executable, os.path.join(SOURCE, "examples", "train.py"), TINY,
                        "train.steps=20", "train.log_every=100", "--save", str(tmp_path / "ckpt")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    steps = [line for line in done.stdout.splitlines() if line.startswith("step ")]
    assert len(steps) == 20, done.stdout  # rank 0 alone prints
    assert "saved and reloaded step 20" in done.stdout
    assert (tmp_path / "ckpt" / "step_00000020" / "manifest.pb").exists()


SOCKET_RANK = """
import json, sys
import numpy as np
from weft.comm import Communicator, FileStore
rank = int(sys.argv[1])
store = FileStore(sys.argv[2])
with Communicator.create(store, "plain", rank, 2, timeout_s=30) as comm:  # "auto": no launcher, so sockets
    data = np.arange(7, dtype=np.float32) * (rank + 1)
    comm.all_reduce(data)
    print(json.dumps({"transport": comm.transport, "sum": data.tolist()}))
"""


def test_processes_started_without_mpirun_form_a_socket_group_through_a_file_store(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMPI_COMM_WORLD", "PMI", "PMIX_", "SLURM_"))}
    ranks = [subprocess.Popen([sys.executable, "-c", SOCKET_RANK, str(r), str(tmp_path / "store")], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(2)]
    for process in ranks:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        result = json.loads(out.strip().splitlines()[-1])
        assert result == {"transport": "socket", "sum": [3.0 * i for i in range(7)]}
