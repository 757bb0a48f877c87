"""The package installs as a wheel with its data, and the code holds no unsafe loads or cwd paths."""

import ast
import os
import re
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

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


CONSOLE_SCRIPTS = ("gym-autoencoder-generate", "gym-autoencoder-train", "gym-autoencoder-evaluate",
                   "gym-autoencoder-demo")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The package built as a wheel, as ``pip install .`` builds it."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        check=True,
    )
    (built,) = out.glob("gym_autoencoder-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A non-editable install of the wheel into its own directory (its dependencies come from this venv)."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True)
    return target


def run_installed(installed: Path, command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``command`` run from ``cwd`` with the installed copy first on the import path."""
    env = {**os.environ, "PYTHONPATH": str(installed)}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)


@pytest.mark.slow
def test_wheel_holds_every_package_and_the_shipped_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in ("", "checkpoints/", "envs/", "model_stubs/", "data_generation/", "training/"):
        assert f"gym_autoencoder/{package}__init__.py" in names
    shipped = {p.name for p in (ROOT / "checkpoints").glob("*.pt")}
    assert {n.rsplit("/", 1)[-1] for n in names if n.startswith("gym_autoencoder/checkpoints/")} >= shipped


@pytest.mark.slow
def test_an_install_adds_one_import_name_and_four_commands(installed, tmp_path):
    top_level = {p.name for p in installed.iterdir() if not p.name.endswith(".dist-info") and p.name != "bin"}
    assert top_level == {"gym_autoencoder"}
    found = run_installed(installed, [sys.executable, "-c", "import gym_autoencoder.training; "
                                      "print(gym_autoencoder.training.__file__)"], tmp_path)
    assert found.returncode == 0 and found.stdout.startswith(str(installed))
    for name in ("training", "model_stubs", "data_generation"):
        assert run_installed(installed, [sys.executable, "-c", f"import {name}"], tmp_path).returncode != 0
    for script in CONSOLE_SCRIPTS:
        shown = run_installed(installed, [str(installed / "bin" / script), "--help"], tmp_path)
        assert shown.returncode == 0 and shown.stdout.startswith("usage:"), (script, shown.stderr)


def readme_commands() -> list[list[str]]:
    """Every command of ours in the README's shell blocks (continued lines joined), split into words;
    a torchrun line counts as the ``python -m MODULE`` it launches."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    commands = []
    for words in (shlex.split(line, comments=True) for line in lines):
        if words and words[0] == "torchrun":
            words = ["python", *words[words.index("-m"):]]
        if words and (words[0].startswith("gym-autoencoder-") or " ".join(words[:3]).startswith("python -m gym_autoencoder")):
            commands.append(words)
    return commands


@pytest.mark.slow
def test_the_readme_commands_work_from_any_directory(installed, tmp_path):
    commands = readme_commands()
    assert {words[0] for words in commands} >= set(CONSOLE_SCRIPTS)
    for words in commands:
        program = [str(installed / "bin" / words[0])] if words[0] in CONSOLE_SCRIPTS else [sys.executable, *words[1:3]]
        subcommand = words[1:2] if words[0] == "gym-autoencoder-generate" else []
        shown = run_installed(installed, [*program, *subcommand, "--help"], tmp_path)
        assert shown.returncode == 0 and "usage:" in shown.stdout, (words, shown.stderr)
    played = run_installed(installed, [str(installed / "bin" / "gym-autoencoder-demo"), "--env", "vae-paper-v0",
                                       "--steps", "20", "--video", "demo.mp4"], tmp_path)
    assert played.returncode == 0, played.stderr
    assert (tmp_path / "demo.mp4").stat().st_size > 0


def import_graph() -> dict[str, set[str]]:
    """Which part of the package imports which: a subpackage counts as one part, a module of the root as one."""
    folders = {"gym_autoencoder": "gym_autoencoder", **{f: f"gym_autoencoder.{f}" for f in
                                                      ("model_stubs", "data_generation", "training", "checkpoints")}}

    def part(module: str) -> str:
        names = module.split(".")
        in_subpackage = len(names) > 1 and (names[1] in folders or (ROOT / "gym_autoencoder" / names[1]).is_dir())
        return ".".join(names[:2]) if in_subpackage else module

    graph: dict[str, set[str]] = {}
    for folder, package in folders.items():
        for path in (ROOT / folder).rglob("*.py"):
            module = ".".join([package, *path.relative_to(ROOT / folder).with_suffix("").parts]).removesuffix(".__init__")
            for statement in ast.walk(ast.parse(path.read_text())):
                if isinstance(statement, ast.ImportFrom) and statement.module:
                    imported = [statement.module]
                elif isinstance(statement, ast.Import):
                    imported = [alias.name for alias in statement.names]
                else:
                    continue
                for name in imported:
                    if name.startswith("gym_autoencoder") and part(name) != part(module):
                        graph.setdefault(part(module), set()).add(part(name))
    return graph


def test_no_part_of_the_package_imports_one_that_imports_it_back():
    graph = import_graph()
    assert graph["gym_autoencoder.training"] >= {"gym_autoencoder.model_stubs", "gym_autoencoder.checkpoint"}
    assert in_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c"]
    assert in_cycles(graph) == []


def in_cycles(graph: dict[str, set[str]]) -> list[str]:
    """The nodes of ``graph`` from which an import chain leads back to themselves."""

    def reaches(start: str, goal: str, seen: frozenset[str]) -> bool:
        return any(nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})) for nxt in graph.get(start, ()))

    return sorted(node for node in graph if reaches(node, node, frozenset()))
