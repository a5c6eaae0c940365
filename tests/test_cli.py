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

    # the run id does not depend on the output folder (that two fresh runs write byte-identical
    # tables: tests/test_runs.py::test_two_fresh_runs_are_byte_identical)
    from xaibench.config import load
    from xaibench.run.plan import plan

    other = json.dumps(str(tmp_path / "second"))
    assert plan(load("quick", ["run.device='cpu'", f"run.out={other}"])).run_id == run_dir.name

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
    """Run the CLI in a fresh interpreter; return (rc, stderr, whether torch got imported).

    "Imported" means torch's own code ran: its extension module ``torch._C`` is loaded (the command
    line defers ``import torch`` while it checks, see xaibench.lazy)."""
    code = ("import sys; from xaibench.cli import main; rc = main(sys.argv[1:]); "
            "print('TORCH', 'torch._C' in sys.modules); sys.exit(rc)")
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


def test_fails_fast_sees_torch_when_it_runs(tmp_path):
    cfg = tmp_path / "ok.toml"
    cfg.write_text('[dataset]\nname = "synthetic"\n[models.r]\narch = "resnet18"\n'
                   '[methods.gradcam]\n[metrics.aopc]\n')
    rc, err, torch_loaded = fails_fast(["run", str(cfg), "--dry-run"], tmp_path)
    assert rc == 0, err
    assert torch_loaded  # a config that passes is run with torch: the probe sees it


@pytest.mark.parametrize("kind, expected", [("methods", "joint"), ("metrics", "needs masks"),
                                            ("datasets", "synthetic"), ("models", "joint_xml_vgg")])
def test_list_needs_no_torch(kind, expected, tmp_path):
    code = ("import sys; from xaibench.cli import main; rc = main(['list', sys.argv[1]]); "
            "print('TORCH', 'torch._C' in sys.modules); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, kind], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert expected in proc.stdout and "TORCH False" in proc.stdout
    if kind == "methods":  # read from its source: joint's module needs torch to import
        assert "[channels: none: the explainer outputs one channel]" in proc.stdout


# The default config has joint models and the joint method, whose modules need torch to import:
# everything else is checked first, so these errors come before torch is imported.
@pytest.mark.parametrize("args, message", [
    (["--set", "metrics.aopc.steps=-1"],
     "--set metrics.aopc.steps=-1: [metrics.aopc] steps: must be in [1, inf], got -1"),
    (["--set", "metrics.aopc.stepz=4"], "--set metrics.aopc.stepz=4: [metrics.aopc] stepz: unknown key"),
    (["--set", "methods.sobel.scale=2"], "--set methods.sobel.scale=2: [methods.sobel] scale: unknown key"),
    (["--set", "methods.integrated_gradients.n_steps='8'"],
     "[methods.integrated_gradients] n_steps: expected int, got '8'"),
    (["--set", "models.resnet18.epochs=-1"], "--set models.resnet18.epochs=-1: [models.resnet18] epochs"),
    (["--set", "dataset.image_size=3"], "--set dataset.image_size=3: [dataset] image_size"),
    (["--set", "methods.gradcam.plugin='gradcma'"], "unknown method 'gradcma'"),
    (["--device", "gpu"], "--device gpu: [run] device: must be 'auto', 'cpu', 'cuda' or 'cuda:N'"),
    (["--seed", "1", "--set", "run.bootstrap=5"], "--set run.bootstrap=5: [run] bootstrap: must be >= 100"),
])
def test_set_errors_name_the_argument_before_torch(args, message, tmp_path):
    rc, err, torch_loaded = fails_fast(["run", "synthetic", "--out", str(tmp_path / "r"), *args], tmp_path)
    assert rc == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1, err  # one line, no traceback
    assert not torch_loaded


def test_config_file_errors_name_the_file_before_torch(tmp_path):
    cfg = tmp_path / "bad.toml"
    base = '[dataset]\nname = "synthetic"\n[models.r]\narch = "resnet18"\n[methods.gradcam]\n'
    for body, message in [
        ('[metrics.aopc]\nsteps = 0\n', "bad.toml: [metrics.aopc] steps: must be in [1, inf], got 0"),
        ('[metrics.aopc]\nsubstrate = "pink"\n', "bad.toml: [metrics.aopc] substrate: must be one of"),
        ('[metrics.aopc]\npatch = 8\n', "bad.toml: [metrics.aopc] patch: unknown key; allowed keys:"),
        ('[metrics.aopc]\n[models.j]\narch = "joint_resnet18"\n[models.r2]\nepochs = "x"\n',
         "bad.toml: [models.r2] epochs: expected int, got 'x'"),
    ]:
        cfg.write_text(base + body)
        rc, err, torch_loaded = fails_fast(["run", str(cfg), "--out", str(tmp_path / "r")], tmp_path)
        assert rc == 2 and message in err, err
        assert not torch_loaded, body


@pytest.mark.parametrize("out", ["{blocker}/results", "{blocker}", "bad\\u0000name"])
def test_impossible_out_is_one_line_before_torch(out, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[run]\nout = "{out.format(blocker=blocker)}"\n[dataset]\nname = "synthetic"\n'
                   '[models.r]\n[methods.gradcam]\n[metrics.aopc]\n')
    rc, err, torch_loaded = fails_fast(["run", str(cfg)], tmp_path)
    assert rc == 2 and "[run] out: cannot write under" in err and "c.toml" in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert not torch_loaded
    rc, err, _ = fails_fast(["run", "quick", "--out", str(blocker / "x")], tmp_path)
    assert rc == 2 and err.startswith(f"xaibench: error: --out {blocker / 'x'}: [run] out: cannot write"), err


def test_list_into_a_closed_pipe_is_quiet():
    proc = subprocess.run(f"{sys.executable} -m xaibench.cli list methods | head -3", shell=True,
                          capture_output=True, text=True)
    assert len(proc.stdout.splitlines()) == 3
    assert proc.stderr == ""  # no BrokenPipeError traceback
