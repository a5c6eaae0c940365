"""Sharded runs under torchrun (2 processes, gloo on CPU): byte-identical to one process, with one
seed (after a rank killed while explaining resumes with the same command) and with two."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# four shards of four test images; one intra-op thread per process, as under torchrun
SETTINGS = ["--set", "run.threads=1", "--set", "run.batch_size=4", "--device", "cpu", "--no-progress"]
SLOW_METHOD = ["--set", "methods.occlusion={window = 8, stride = 2}"]
TABLES = ("leaderboard.csv", "scores.csv", "curves.csv")


def one_process(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "xaibench", "run", "quick", "--out", str(out),
                           *SETTINGS, *extra], capture_output=True, text=True)


def torchrun(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
            "-m", "xaibench", "run", "quick", "--out", str(out), *SETTINGS, *extra]


def run_dir(out: Path) -> Path:
    (found,) = (out / "synthetic").glob("quick-*")
    return found


def children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.slow
def test_two_processes_write_the_same_tables_as_one_with_several_seeds(tmp_path):
    seeds = ["--seeds", "0,1", "--set", "dataset.n_train=16"]  # each seed's model trained on rank 0
    single = one_process(tmp_path / "one", *seeds)
    assert single.returncode == 0, single.stderr
    proc = subprocess.run(torchrun(tmp_path / "two", *seeds), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    for name in (*TABLES, "models.csv"):
        two, one = run_dir(tmp_path / "two") / name, run_dir(tmp_path / "one") / name
        assert two.read_bytes() == one.read_bytes(), name
    assert "seed" in (run_dir(tmp_path / "one") / "scores.csv").read_text().splitlines()[0].split(",")
    assert '"processes": 2' in (run_dir(tmp_path / "two") / "manifest.json").read_text()


@pytest.mark.slow
def test_a_rank_killed_while_explaining_resumes_with_the_same_command(tmp_path):
    reference = one_process(tmp_path / "one", *SLOW_METHOD)
    assert reference.returncode == 0, reference.stderr
    out = tmp_path / "two"
    launcher = subprocess.Popen(torchrun(out, *SLOW_METHOD), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
    shards = out / "synthetic" / "cache" / "attributions"
    deadline = time.monotonic() + 300
    while not list(shards.glob("resnet18-occlusion-*/0*.pt")):
        assert launcher.poll() is None, launcher.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    workers = children(launcher.pid)
    assert len(workers) == 2, workers
    os.kill(max(workers), signal.SIGKILL)  # one rank, SIGKILL, while occlusion is half done
    launcher.communicate(timeout=120)
    assert launcher.returncode != 0  # torchrun stops the other rank and fails
    assert not list((out / "synthetic").glob("quick-*/leaderboard.csv"))
    done = [p for p in shards.glob("resnet18-occlusion-*/0*.pt")]
    assert 1 <= len(done) < 4, done
    resumed = subprocess.run(torchrun(out, *SLOW_METHOD), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    for name in TABLES:  # one seed: byte-identical to one process, after the resume
        assert (run_dir(out) / name).read_bytes() == (run_dir(tmp_path / "one") / name).read_bytes(), name
    assert '"processes": 2' in (run_dir(out) / "manifest.json").read_text()
