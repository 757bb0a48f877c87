"""examples/rllib_ppo.py at tiny size: two env runners, one PPO iteration, finite results.

Runs where ``ray[rllib]`` is installed (``pip install -e ".[rllib]"``, in a virtual environment
of its own since RLlib pins its own Gymnasium; ``.ci/run`` makes one); skipped elsewhere.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray.rllib", reason='needs ray[rllib]: pip install -e ".[rllib]" in a virtual environment of its own')

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "rllib_ppo.py"
ITERATION_LINE = re.compile(
    r"iteration 1/1: (?P<steps>[\d,]+) env steps  episode return mean (?P<ret>\S+)  total loss (?P<loss>\S+)"
)


def run_example(*args: str) -> str:
    run = subprocess.run([sys.executable, str(EXAMPLE), *args], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


def test_rllib_ppo_example_answers_help():
    assert "--address" in run_example("--help")


def test_rllib_ppo_example_trains_one_iteration_on_two_env_runners():
    stdout = run_example(
        "--iterations", "1", "--env-runners", "2", "--train-batch-size", "200", "--minibatch-size", "100",
        "--num-epochs", "1", "--max-episode-steps", "50",
    )
    assert "2 env runners, each playing vae-alex-v0 with the shipped weights" in stdout
    match = ITERATION_LINE.search(stdout)
    assert match, stdout
    assert int(match["steps"].replace(",", "")) >= 200
    # episodes of at most 50 steps end within the 200 sampled, so a mean return exists
    assert math.isfinite(float(match["ret"])) and math.isfinite(float(match["loss"]))
