"""The probe benchmark prints both probes for the pixel reference and each checkpoint."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import copy_frames

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_probes.py"


@pytest.mark.slow
def test_the_probe_benchmark_prints_both_probes_per_encoding(data_dir):
    ran = subprocess.run([sys.executable, str(SCRIPT), "--data-dir", str(data_dir), "--checkpoints", "Conv_Maxpool"],
                         capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    rows = {line.split()[0]: line.split()[-3:] for line in ran.stdout.splitlines()[2:]}
    assert rows["16x16"][0] == "768" and rows["Conv_Maxpool"][0] == "32"
    for floats, visibility, policy in rows.values():
        assert 0.0 <= float(visibility) <= 1.0 and (policy == "n/a" or 0.0 <= float(policy) <= 1.0)


def test_a_data_set_without_oracle_labels_is_refused_in_one_line(small_data_dir, tmp_path):
    unlabelled = copy_frames(small_data_dir, tmp_path / "frames")
    ran = subprocess.run([sys.executable, str(SCRIPT), "--data-dir", str(unlabelled)], capture_output=True, text=True)
    assert ran.returncode == 2 and "regenerate the data" in ran.stderr
