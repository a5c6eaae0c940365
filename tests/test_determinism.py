"""Runs on CUDA use torch's deterministic kernels; the settings are restored afterwards, and on
the CPU nothing is touched. On CUDA (`make gpu-check`): two runs of a config with a joint model
write the same leaderboard, byte for byte."""

import os
import subprocess
import sys

import pytest
import torch

from xaibench.run.determinism import deterministic_cuda


def settings():
    return (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled())


def test_on_cuda_deterministic_kernels_are_asked_for_and_the_settings_restored(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = settings()
    with deterministic_cuda("cuda:0"):  # the flags need no GPU to be set
        assert settings() == (True, False, True, True)
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert settings() == before


def test_on_the_cpu_nothing_is_changed():
    before = settings()
    with deterministic_cuda("cpu"):
        assert settings() == before


CONFIG = """
[run]
seed = 0
device = "cuda"
batch_size = 8

[dataset]
name = "synthetic"
variant = "colour"
image_size = 32
n_train = 64
n_val = 16
n_test = 16
radius = [3, 6]
n_shapes = [1, 3]

[models.resnet18]
arch = "resnet18"
epochs = 2
batch_size = 16

[models.joint]
arch = "joint_resnet18"
loss = "hybrid"
batch_size = 16
epochs = [1, 1, 1]

[methods.gradcam]

[methods.integrated_gradients]
n_steps = 8

[methods.joint]

[metrics.aopc]
patch_size = 8
steps = 4

[metrics.relevance_mass]
"""


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_two_runs_on_cuda_write_the_same_leaderboard(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text(CONFIG)
    boards = []
    for out in ("a", "b"):
        proc = subprocess.run([sys.executable, "-m", "xaibench.cli", "run", str(cfg), "--out",
                               str(tmp_path / out), "--no-progress"], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
        (scores,) = (tmp_path / out).glob("*/*/scores.csv")
        boards.append({name: (scores.parent / name).read_bytes()
                       for name in ("leaderboard.csv", "scores.csv")})
    assert boards[0] == boards[1]  # the leaderboard and every per-image score, byte for byte
