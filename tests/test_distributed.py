"""Data-parallel training under real torchrun (gloo, CPU): a 2-process run trains as one process
on the same global batches, resumes with 1 process, runs across two torchrun "machines", and
a process that dies ends the launch with its last epoch saved.

Each launch starts Python processes that import torch, so the runs are few and tiny: 40 training
frames in batches of 15 (3 steps an epoch, the last batch split 3/2 unevenly, the others 8/7),
2 epochs, one thread per process.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import copy

import numpy as np
import pytest
import torch
from torch import nn

from gym_autoencoder import load_checkpoint
from gym_autoencoder.model_stubs import build_model
from gym_autoencoder.training.distributed import Processes
from gym_autoencoder.training.autoencoder_training import main
from gym_autoencoder.training.heads import LabelHead
from gym_autoencoder.training.loop import read_state
from tests.helpers import write_dataset

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "training" / "autoencoder_training.py"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
# Conv_Unpool has batch norms and no sampling noise; the visibility head has one more batch norm.
# The plain layout: channels-last kernels round differently for different batch sizes (about 1e-4
# of the loss), which would hide what the comparison checks.
RUN = ["--model", "Conv_Unpool", "--name", "run", "--batch-size", "15", "--epochs", "2", "--threads", "1",
       "--visibility-weight", "0.5", "--skip-evaluation", "--log-interval", "1000", "--memory-format", "contiguous"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def arguments(save_dir: Path, data_dir: Path, *extra: str) -> list[str]:
    return [*RUN, "--data-dir", str(data_dir), "--save-dir", str(save_dir), *extra]


def launch(command: list[str], save_dir: Path, data_dir: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([*command, str(SCRIPT), *arguments(save_dir, data_dir, *extra)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def finish(process: subprocess.Popen, timeout: float = 120) -> str:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, out + err
    return out + err


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("tiny"), 40, 8)


@pytest.fixture(scope="module")
def runs(tiny_data, tmp_path_factory, one_torch_thread) -> dict[str, Path]:
    """The run in two processes started by two torchrun commands that meet at a c10d rendezvous
    endpoint, as on two machines (one process each), and meanwhile in this process."""
    one, two = tmp_path_factory.mktemp("one"), tmp_path_factory.mktemp("two")
    endpoint = f"127.0.0.1:{free_port()}"
    nodes = [TORCHRUN + ["--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d",
                         "--rdzv-endpoint", endpoint, "--rdzv-id", "test"] for _ in range(2)]
    processes = [launch(node, two, tiny_data) for node in nodes]
    assert main(arguments(one, tiny_data)) == 0
    outputs = [finish(process) for process in processes]
    return {"one": one / "run", "two": two / "run", "two_output": "".join(outputs)}


def test_two_processes_on_two_nodes_train_as_one_process(runs):
    """k = 6 optimiser steps: the losses (training, in training mode, and held-out) and the batch
    norms' running variances of the 2-process run are those of the 1-process run.

    Parameter by parameter the runs differ in the weights whose gradient is near 0: float32
    sums of a batch's gradient in two parts round differently (about 1e-4 of the largest
    gradient, in one process as well), and Adam's first steps, of about lr whatever the
    gradient's size, follow the rounding there (test_global_batch_norm_gives_the_gradients_of_the_whole_batch
    checks the gradients in float64). The losses and statistics hardly depend on those weights.
    With per-process batch norms the first loss differs by 1e-2 (allowed: 1e-6); without the
    scaling of the parts' losses the epochs' losses differ by 1e-4 (measured)."""
    one, two = read_state(runs["one"] / "checkpoints" / "last.pt"), read_state(runs["two"] / "checkpoints" / "last.pt")
    assert one["state"]["epoch"] == two["state"]["epoch"] == 2
    history_one, history_two = one["state"]["history"], two["state"]["history"]
    np.testing.assert_allclose(history_two["train_loss"][0], history_one["train_loss"][0], rtol=1e-6)
    np.testing.assert_allclose(history_two["train_loss"], history_one["train_loss"], rtol=1e-4)
    np.testing.assert_allclose(history_two["test_loss"], history_one["test_loss"], rtol=1e-3)
    assert history_two["test_visibility_accuracy"] == pytest.approx(history_one["test_visibility_accuracy"])
    variances = [(part, key) for part in ("model", "visibility_head") for key in one[part] if key.endswith("running_var")]
    assert len(variances) == 12  # 11 in the model, 1 in the head
    for part, key in variances:
        torch.testing.assert_close(two[part][key], one[part][key], rtol=5e-3, atol=0, msg=key)
    for part in ("model", "visibility_head"):
        assert one[part]["norm.num_batches_tracked" if part != "model" else "down.0.1.num_batches_tracked"] == 6
        assert {key: value.shape for key, value in two[part].items()} == {key: value.shape for key, value in one[part].items()}


def test_the_checkpoints_record_how_the_run_was_trained(runs):
    assert "on 2 processes on 2 machines (gloo: cpu, cpu)" in runs["two_output"]
    assert runs["two_output"].count("epoch 2/2: train") == 1  # rank 0 alone logs
    expected = {"world_size": 2, "nodes": 2, "backend": "gloo", "devices": ["cpu", "cpu"]}
    _, metadata = load_checkpoint(runs["two"] / "run.pt")
    assert metadata["distributed"] == expected
    assert read_state(runs["two"] / "checkpoints" / "last.pt")["distributed"] == expected
    assert load_checkpoint(runs["one"] / "run.pt")[1]["distributed"] == {
        "world_size": 1, "nodes": 1, "backend": None, "devices": ["cpu"]}


def test_a_two_process_run_resumes_in_one_process(runs, tiny_data, one_torch_thread, capsys):
    assert main(arguments(runs["two"].parent, tiny_data, "--resume", "--epochs", "3")) == 0
    assert "resuming after epoch 2" in capsys.readouterr().out
    state = read_state(runs["two"] / "checkpoints" / "last.pt")
    assert state["state"]["epoch"] == 3 and len(state["state"]["history"]["train_loss"]) == 3
    assert state["distributed"]["world_size"] == 1
    model, _ = load_checkpoint(runs["two"] / "run.pt")
    assert model.encode(torch.zeros(1, 3, 64, 64)).shape == (1, 32, 6, 6)


def _workers(parent: int) -> dict[int, int]:
    """The ranks of the processes whose parent is ``parent`` (a torchrun agent), with their ids."""
    workers = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) != parent:
                continue
            variables = (stat.parent / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        rank = next((int(v[5:]) for v in variables if v.startswith(b"RANK=")), None)
        workers[rank] = int(stat.parent.name)
    return workers


def test_a_process_that_dies_ends_the_run_with_the_last_epoch_saved(tiny_data, tmp_path):
    """SIGKILL rank 1 once epoch 1 is saved: torchrun stops rank 0 and fails at once, naming the
    rank and the signal, and last.pt holds a whole epoch that resumes."""
    command = TORCHRUN + ["--nproc-per-node", "2", "--master-port", str(free_port())]
    torchrun = launch(command, tmp_path, tiny_data, "--epochs", "200", "--patience", "200")
    state_path = tmp_path / "run" / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 120
    while not state_path.exists() and torchrun.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert state_path.exists(), torchrun.communicate()
    os.kill(_workers(torchrun.pid)[1], signal.SIGKILL)
    killed = time.monotonic()
    out, err = torchrun.communicate(timeout=60)
    assert torchrun.returncode != 0 and time.monotonic() - killed < 30
    assert "rank      : 1" in err and "SIGKILL" in err
    state = read_state(state_path)
    assert state["state"]["epoch"] >= 1
    assert len(state["state"]["history"]["train_loss"]) == state["state"]["epoch"]


def test_the_processes_split_batches_and_items_as_array_split():
    rows = np.arange(100, 111)
    parts = [Processes(3, rank).part(rows) for rank in range(3)]
    for got, expected in zip(parts, np.array_split(rows, 3)):
        np.testing.assert_array_equal(got, expected)
    assert [Processes(3, rank).shard(11) for rank in range(3)] == [slice(0, 4), slice(4, 8), slice(8, 11)]
    assert [len(range(2)[Processes(3, rank).shard(2)]) for rank in range(3)] == [1, 1, 0]
    one = Processes()
    np.testing.assert_array_equal(one.part(rows), rows)
    assert one.shard(11) == slice(0, 11) and one.sum([1.5, 2.0]) == [1.5, 2.0] and one.agree(3.5) == 3.5


def test_torchrun_environments_are_read_and_checked():
    assert Processes.from_environment({}).world_size == 1
    launched = Processes.from_environment({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", "GROUP_WORLD_SIZE": "2"})
    assert (launched.world_size, launched.rank, launched.local_rank, launched.nodes) == (4, 3, 1, 2)
    assert launched.label == " (rank 3 of 4)" and not launched.is_main
    for broken in ({"WORLD_SIZE": "2"}, {"WORLD_SIZE": "2", "RANK": "2", "LOCAL_RANK": "0"},
                   {"WORLD_SIZE": "two", "RANK": "0", "LOCAL_RANK": "0"}):
        with pytest.raises(Exception, match="torchrun") as caught:
            Processes.from_environment(broken)
        assert type(caught.value).__name__ == "ConfigError"


def test_batches_smaller_than_the_processes_are_refused():
    with pytest.raises(Exception, match="last batch of an epoch holds 1 .*at most 1 process,"):
        Processes(2, 0).check_batches(41, 20)
    Processes(2, 0).check_batches(42, 20)


class _ModelAndHead(nn.Module):
    def __init__(self, model: nn.Module, head: LabelHead) -> None:
        super().__init__()
        self.model, self.head = model, head

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        output = self.model(x)
        return self.model.loss_function(x, output)["loss"] + self.head.loss(self.head(output["encoding"]), labels)


def compare_gradients() -> None:
    """Run by torchrun in 2 processes: in float64, where rounding is far below what is checked,
    the gradients and batch-norm statistics of Conv_Unpool and a label head trained on the parts
    (4 and 3 frames) of a batch of 7 are those of one process on the whole batch, and so are the
    parameters after 3 Adam steps."""
    with Processes.from_environment() as dist:
        generator = torch.Generator().manual_seed(0)
        x = torch.rand((7, 3, 64, 64), generator=generator, dtype=torch.float64)
        labels = (torch.rand((7, 5), generator=generator) > 0.5).double()
        torch.manual_seed(0)
        model = build_model("Conv_Unpool")
        alone = _ModelAndHead(model, LabelHead(model.encoding_shape, labels.float().numpy(), 0.5)).double().train()
        together = copy.deepcopy(alone)
        alone(x, labels).backward()
        rows = dist.part(np.arange(7))
        wrapped = dist.wrap(together, torch.device("cpu"))
        dist.share(wrapped(x[rows], labels[rows]), len(rows), 7).backward()
        scale = max(p.grad.abs().max() for p in alone.parameters())
        for (name, expected), got in zip(alone.named_parameters(), together.parameters()):
            torch.testing.assert_close(got.grad, expected.grad, rtol=1e-9, atol=1e-12 * scale, msg=name)
        for (name, expected), got in zip(alone.named_buffers(), together.buffers()):
            torch.testing.assert_close(got, expected, rtol=1e-9, atol=0, msg=name)
        print(f"rank {dist.rank}: {len(rows)} frames, gradients equal")
        # then k = 3 Adam steps of each, as training takes them: the parameters stay equal
        optimisers = [torch.optim.Adam(module.parameters(), lr=1e-3) for module in (alone, together)]
        for step in range(3):
            if step:
                for optimiser in optimisers:
                    optimiser.zero_grad()
                alone(x, labels).backward()
                dist.share(wrapped(x[rows], labels[rows]), len(rows), 7).backward()
            for optimiser in optimisers:
                optimiser.step()
        for (name, expected), got in zip(alone.named_parameters(), together.parameters()):
            # a conv bias right before a batch norm has a gradient of 0 up to rounding, which Adam's
            # normalised steps turn into moves of rounding size: ~1e-9 here, 1e-6 of the rate
            torch.testing.assert_close(got, expected, rtol=1e-7, atol=1e-8, msg=lambda m, name=name: f"{name}: {m}")
        print(f"rank {dist.rank}: parameters equal after 3 Adam steps")


def test_global_batch_norm_gives_the_gradients_of_the_whole_batch():
    done = subprocess.run(TORCHRUN + ["--nproc-per-node", "2", "--master-port", str(free_port()), "-m",
                                      "tests.test_distributed"], capture_output=True, text=True, env=ENV,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rank 0: 4 frames, gradients equal" in done.stdout
    assert "rank 0: parameters equal after 3 Adam steps" in done.stdout


if __name__ == "__main__":
    compare_gradients()
