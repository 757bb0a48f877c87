"""The package installs as a wheel with its data, and the code holds no unsafe loads or cwd paths."""

import re
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIRS = ("gym_autoencoder", "model_stubs", "data_generation", "training", "benchmarks", "checkpoints")


def python_sources():
    for folder in SOURCE_DIRS:
        yield from (ROOT / folder).rglob("*.py")


def test_every_torch_load_is_weights_only():
    calls = [
        f"{path.name}: {line.strip()}"
        for path in python_sources()
        for line in path.read_text().splitlines()
        if "torch.load(" in line and "weights_only=True" not in line
    ]
    assert calls == []


def test_no_paths_relative_to_the_working_directory():
    pattern = re.compile(r"""["']\.{1,2}/""")
    hits = [
        f"{path.name}: {line.strip()}"
        for path in python_sources()
        for line in path.read_text().splitlines()
        if pattern.search(line)
    ]
    assert hits == []


def test_wheel_holds_every_package_and_the_shipped_data(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
    )
    (wheel,) = tmp_path.glob("gym_autoencoder-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in ("", "checkpoints/", "envs/", "model_stubs/", "data_generation/", "training/"):
        assert f"gym_autoencoder/{package}__init__.py" in names
    assert {name.split("/")[0] for name in names if not name.startswith("gym_autoencoder-")} == {"gym_autoencoder"}
    shipped = {p.name for p in (ROOT / "checkpoints").glob("*.pt")}
    assert {n.rsplit("/", 1)[-1] for n in names if n.startswith("gym_autoencoder/checkpoints/")} >= shipped
