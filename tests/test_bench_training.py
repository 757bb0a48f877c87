"""The training benchmark runs its variants and its torchrun launches on a small data set."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_training.py"


def test_the_benchmark_prints_frames_per_second_and_ratios_for_each_variant_and_process_count(data_dir):
    ran = subprocess.run([sys.executable, str(SCRIPT), "--data-dir", str(data_dir), "--models", "Conv_Maxpool",
                          "--variants", "held", "channels_last", "--batches", "2", "--rounds", "1",
                          "--device", "cpu", "--sections", "variants", "ddp"], capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    variants = re.search(r"^Conv_Maxpool +(\d+) +(\d+) \((\d\.\d\d)\) +(\d+) \((\d\.\d\d)\)$", ran.stdout, re.M)
    assert variants, ran.stdout
    base, held, held_ratio = float(variants[1]), float(variants[2]), float(variants[3])
    assert base > 0 and held_ratio == pytest.approx(held / base, abs=0.01)
    launched = re.search(r"^Conv_Maxpool +(\d+) +(\d+) +(\d\.\d\d)$", ran.stdout, re.M)
    assert launched and float(launched[1]) > 0 and float(launched[2]) > 0, ran.stdout
