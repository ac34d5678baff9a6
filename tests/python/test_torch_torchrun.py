"""torch.distributed over backend "weft" under torchrun, with no mpirun: every process is an MPI-less process that
torchrun started, and weft's groups are socket groups set up through torch's TCPStore. Every operation against exact
results and gloo (sub-groups included), DDP against DDP over gloo, and a killed rank. The ranks run
torch_rank_main.py."""
import os
import subprocess
import sys

import pytest
from conftest import rank_results
from torchrun_checks import check_every_operation_and_ddp, check_survivors_of_a_kill, ops_mode

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
    # exact result and gloo, then DDP over weft and over gloo (torchrun_checks.ops_mode says which optimizer).
    done, results = torchrun(tmp_path, ranks, ops_mode(ranks))
    assert done.returncode == 0, done.stdout + done.stderr
    check_every_operation_and_ddp(results, ranks, done.stdout + done.stderr)


def test_a_killed_rank_under_torchrun_makes_the_survivors_raise_naming_it(tmp_path):
    # The dead rank's connections close with its process, so the survivors fail at once (well within the 5 s
    # timeout), before torchrun's agent (polling every 3 s) stops them.
    done, results = torchrun(tmp_path, 3, "kill", launcher_args=["--monitor-interval", "3"], timeout=120)
    check_survivors_of_a_kill(results, 3, done.stdout + done.stderr)
