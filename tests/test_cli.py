"""The command line end to end, in subprocesses, on the quick config."""

import json
import subprocess
import sys

import pandas as pd
import pytest

from xaibench.cli import main


def xaibench(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "xaibench.cli", *args], capture_output=True,
                          text=True, cwd=cwd)


def test_run_quick_end_to_end(tmp_path):
    proc = xaibench("run", "quick", "--out", str(tmp_path), "--no-progress", "--device", "cpu",
                    cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (tmp_path / "synthetic").glob("quick-*")
    board = pd.read_csv(run_dir / "leaderboard.csv")
    assert list(board[["model", "method"]].itertuples(index=False, name=None)) == [("resnet18", "gradcam")]
    assert {"accuracy", "aopc_mean", "aopc_ci_low", "aopc_ci_high", "n"} <= set(board.columns)
    row = board.iloc[0]
    assert row["aopc_ci_low"] <= row["aopc_mean"] <= row["aopc_ci_high"]
    assert row["n"] == 16
    scores = pd.read_csv(run_dir / "scores.csv")
    assert set(scores["metric"]) == {"aopc", "aopc_lerf", "aopc_gap"}
    aopc = scores[scores["metric"] == "aopc"]
    assert len(aopc) == 16 and aopc["value"].mean() == pytest.approx(row["aopc_mean"], abs=1e-5)
    assert row["aopc_gap_mean"] == pytest.approx(row["aopc_mean"] - row["aopc_lerf_mean"], abs=1e-5)
    assert (run_dir / "plots" / "aopc_morf.png").stat().st_size > 1000
    assert "## Leaderboard" in (run_dir / "report.md").read_text()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["seed"] == 0 and manifest["device"] == "cpu"
    assert manifest["config"]["metrics"]["aopc"]["steps"] == 4
    assert {"torch", "torchvision", "captum", "xaibench"} <= set(manifest["versions"])
    assert manifest["timings"]["total_s"] > 0
    assert (run_dir / "training" / "resnet18.csv").exists()

    # a fresh run elsewhere (nothing cached) with the same config and seed: byte-identical tables
    other = tmp_path / "second"
    fresh = xaibench("run", "quick", "--out", str(other), "--no-progress", "--device", "cpu")
    assert fresh.returncode == 0, fresh.stderr
    (other_dir,) = (other / "synthetic").glob("quick-*")
    assert other_dir.name == run_dir.name  # the run id does not depend on the output folder
    for name in ("leaderboard.csv", "scores.csv", "curves.csv"):
        assert (other_dir / name).read_bytes() == (run_dir / name).read_bytes(), name

    # a second run reuses the cached checkpoint and attributions and gives the same table
    again = xaibench("run", "quick", "--out", str(tmp_path), "--no-progress", "--device", "cpu")
    assert again.returncode == 0, again.stderr
    assert all(not c["computed"] for c in json.loads((run_dir / "manifest.json").read_text())["cells"])
    assert "0 of 4 cells computed" in again.stdout  # data, model, explain, score
    assert pd.read_csv(run_dir / "leaderboard.csv").equals(board)


def test_set_override_changes_run(tmp_path):
    proc = xaibench("run", "quick", "--out", str(tmp_path), "--no-progress",
                    "--set", "metrics.aopc.steps=2", "--set", "run.bootstrap=100")
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (tmp_path / "synthetic").glob("quick-*")
    curves = pd.read_csv(run_dir / "curves.csv")
    assert curves["step"].max() == 2


def fails_fast(args, tmp_path):
    """Run the CLI in a fresh interpreter; return (rc, stderr, whether torch got imported)."""
    code = ("import sys; from xaibench.cli import main; rc = main(sys.argv[1:]); "
            "print('TORCH', 'torch' in sys.modules); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          cwd=tmp_path)
    return proc.returncode, proc.stderr, "TORCH True" in proc.stdout


def test_unknown_dataset_fails_fast_and_writes_nothing(tmp_path):
    out = tmp_path / "results"
    rc, err, torch_loaded = fails_fast(["run", "nosuchdataset", "--out", str(out)], tmp_path)
    assert rc == 2
    assert "unknown dataset or config 'nosuchdataset'" in err and "synthetic" in err
    assert not torch_loaded  # the check reads package metadata only: no torch import
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_unknown_method_fails_fast_and_writes_nothing(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[dataset]\nname = "synthetic"\n[models.r]\narch = "resnet18"\n'
                   '[methods.gradcma]\n[metrics.aopc]\n')
    out = tmp_path / "results"
    rc, err, torch_loaded = fails_fast(["run", str(cfg), "--out", str(out)], tmp_path)
    assert rc == 2
    assert "[methods.gradcma] unknown method 'gradcma'; known methods:" in err and "gradcam" in err
    assert not torch_loaded
    assert not out.exists()


def test_unwritable_out_fails_before_work(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    rc = main(["run", "quick", "--out", str(blocker / "results"), "--no-progress"])
    assert rc == 2
    assert "cannot write under" in capsys.readouterr().err
    assert blocker.read_text() == "not a folder"


def test_list(capsys):
    assert main(["list", "methods"]) == 0
    out = capsys.readouterr().out
    assert "gradcam" in out and "Grad-CAM" in out and "channels:" in out
    assert main(["list", "metrics"]) == 0
    assert "aopc" in capsys.readouterr().out
    assert main(["list", "datasets"]) == 0
    assert "synthetic" in capsys.readouterr().out
