"""torch.distributed over backend "weft" under torchrun, with no mpirun: every process is an MPI-less process that
torchrun started, and weft's groups are socket groups set up through torch's TCPStore. Every operation against exact
results and gloo (sub-groups included), DDP against DDP over gloo, and a killed rank. The ranks run
torch_rank_main.py."""
import os
import subprocess
import sys

import pytest
from conftest import rank_results

HERE = os.path.dirname(__file__)


def torchrun(tmp_path, ranks, *args, timeout=240, launcher_args=()):
    """torch_rank_main.py on `ranks` local processes of `torchrun --standalone`; (completed process, {rank: result})."""
    out = tmp_path / "result"
    env = dict(os.environ)
    # mpirun's variables would make the ranks believe they are one MPI job (a test itself run under mpirun).
    for key in [k for k in env if k.startswith(("OMPI_", "PMI", "PMIX_", "SLURM_"))]:
        del env[key]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks),
               *launcher_args, os.path.join(HERE, "torch_rank_main.py"), args[0], str(out), *args[1:]]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    return done, rank_results(tmp_path, ranks)


@pytest.mark.parametrize("ranks", [2, 3])
def test_every_operation_and_ddp_under_torchrun_match_the_exact_result_and_gloo(tmp_path, ranks):
    # One job per size runs both modes (each torchrun start costs seconds of imports): every operation against the
    # exact result and gloo, then DDP over weft and over gloo. Two ranks: sums of two addends do not depend on the
    # order, so AdamW's parameters are bit-identical to gloo's. Three: weft adds in rank order, gloo in its own, so
    # SGD's parameters (momentum 0.9, 10 steps) agree to fp32 rounding, within 1e-5 of the largest parameter.
    done, results = torchrun(tmp_path, ranks, "ops+ddp" if ranks == 2 else "ops+ddp:sgd")
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(results) == list(range(ranks)), done.stdout + done.stderr
    for result in results.values():
        assert result["failures"] == [], result["failures"]
        assert result["checked"] == 115
        if ranks == 2:
            assert result["identical"], result
        else:
            assert result["max_abs_difference"] <= 1e-5 * max(1.0, result["max_abs"]), result


def test_a_killed_rank_under_torchrun_makes_the_survivors_raise_naming_it(tmp_path):
    # The dead rank's connections close with its process, so the survivors fail at once (well within the 5 s
    # timeout), before torchrun's agent (polling every 3 s) stops them.
    done, results = torchrun(tmp_path, 3, "kill", launcher_args=["--monitor-interval", "3"], timeout=120)
    assert sorted(results) == [0, 1], done.stdout + done.stderr  # the victim wrote nothing
    for survivor in results.values():
        assert survivor["raised"] is not None, survivor
        assert survivor["seconds"] < 5, survivor
        assert "rank 2" in survivor["message"] and "all_reduce" in survivor["message"], survivor["message"]
