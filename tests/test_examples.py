"""The examples run end to end at tiny size and print what their docstrings promise.

(examples/rllib_ppo.py needs ray[rllib] in a virtual environment of its own: tests/rllib.)
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, *args: str) -> str:
    run = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


@pytest.mark.parametrize("name", ["ppo_stable_baselines3.py", "neuroevolution_cma.py"])
def test_examples_answer_help(name):
    assert "usage:" in run_example(name, "--help")


def test_ppo_example_trains_on_encodings_and_on_raw_pixels():
    out = run_example(
        "ppo_stable_baselines3.py", "--timesteps", "256", "--num-envs", "2", "--n-steps", "64",
        "--batch-size", "64", "--n-epochs", "1",
    )
    for label in ("encoded vae-alex-v0 MlpPolicy", "raw pixels CnnPolicy"):
        progress = re.findall(rf"^{label}: +([\d,]+) steps .* ([\d,]+) steps/s$", out, re.MULTILINE)
        assert [steps for steps, _ in progress] == ["128", "256"], out
        assert re.search(rf"^{label} done: 256 steps in [\d.]+ s = [\d,]+ steps/s; \d+ episodes", out, re.MULTILINE), out


def test_cma_example_prints_best_and_mean_return_per_generation():
    out = run_example(
        "neuroevolution_cma.py", "--generations", "2", "--population", "4", "--episodes", "1",
        "--max-steps", "20", "--seed", "3",
    )
    generations = re.findall(
        r"^generation +(\d)/2 +best +(-?[\d.]+) +mean +(-?[\d.]+) +\(4 episodes, ([\d,]+) steps", out, re.MULTILINE
    )
    assert [g[0] for g in generations] == ["1", "2"], out
    for _, best, mean, steps in generations:
        assert float(best) >= float(mean) and 0 < int(steps.replace(",", "")) <= 4 * 20
    assert re.search(r"^best candidate: mean return -?[\d.]+ over 1 episodes, 975 parameters$", out, re.MULTILINE)
