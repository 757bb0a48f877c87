import contextlib
import json
import os
import signal
import stat
import subprocess
import sys

import pytest

from gym_autoencoder.atomic import (
    COMMIT_JOURNAL,
    atomic_path,
    atomic_write_text,
    finish_commit,
    is_temporary_of,
    remove_stale_temporaries,
    temporary_path,
)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "report.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.txt"]


def test_written_files_get_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644


def test_suffix_is_kept_for_writers_that_insist_on_one(tmp_path):
    with atomic_path(tmp_path / "v.mp4", suffix=".mp4") as tmp:
        assert tmp.name.endswith(".mp4")
        tmp.write_bytes(b"data")
    assert (tmp_path / "v.mp4").read_bytes() == b"data"


def test_a_killed_writers_temporary_is_removed_by_the_next_writer_and_a_live_ones_is_kept(tmp_path):
    target = tmp_path / "frames.npy"
    script = (
        "import os, signal, sys\n"
        "from gym_autoencoder.atomic import atomic_path\n"
        "with atomic_path(sys.argv[1], suffix='.npy') as tmp:\n"
        "    tmp.write_bytes(b'half')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    killed = subprocess.run([sys.executable, "-c", script, str(target)], capture_output=True)
    assert killed.returncode == -signal.SIGKILL
    (stale,) = tmp_path.iterdir()
    assert is_temporary_of(stale.name, target.name) and stale.read_bytes() == b"half"
    with atomic_path(target, suffix=".npy") as live:
        live.write_bytes(b"in progress")
        assert remove_stale_temporaries(target) == []  # a writer holds ``live``
        assert sorted(p.name for p in tmp_path.iterdir()) == [live.name]  # the killed one is gone
    assert [p.name for p in tmp_path.iterdir()] == ["frames.npy"]


def test_only_this_modules_temporaries_are_recognised():
    assert is_temporary_of(".frames.npy.ab_c1234.tmp.npy", "frames.npy")
    assert is_temporary_of(".report.txt.abcdefgh.tmp", "report.txt")
    assert not is_temporary_of(".frames.npy.abc.tmp", "frames.npy")
    assert not is_temporary_of("frames.npy.abcdefgh.tmp", "frames.npy")
    assert not is_temporary_of(".frames.npy.abcdefgh.bak", "frames.npy")


def test_an_interrupted_commit_is_completed_in_order(tmp_path):
    temporaries = {}
    with contextlib.ExitStack() as stack:
        for name in ("a.bin", "b.bin"):
            temporaries[name] = stack.enter_context(temporary_path(tmp_path / name))
            temporaries[name].write_bytes(name.encode())
        (tmp_path / COMMIT_JOURNAL).write_text(json.dumps({n: t.name for n, t in temporaries.items()}))
        os.replace(temporaries["a.bin"], tmp_path / "a.bin")  # the first rename was done
        assert finish_commit(tmp_path)
    assert tree(tmp_path) == {"a.bin": b"a.bin", "b.bin": b"b.bin"}
    assert not finish_commit(tmp_path)


def tree(directory):
    return {p.name: p.read_bytes() for p in directory.iterdir()}


def test_a_journal_not_written_by_a_commit_renames_nothing(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    for journal in ("not json", json.dumps(["a", "b"]), json.dumps({"../x": ".x.abcdefgh.tmp"}),
                    json.dumps({"keep.txt": "other.txt"})):
        (tmp_path / COMMIT_JOURNAL).write_text(journal)
        assert finish_commit(tmp_path)
        assert tree(tmp_path) == {"keep.txt": b"mine"}
