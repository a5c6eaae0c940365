"""The real-dataset configs through the command line, on tiny datasets in the real format."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from .datafiles import write_imagenet_hvz

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "imagenet_hvz.toml"
# The paper's schedule and sizes, cut down so that the run takes seconds on a CPU.
SMALL = ["dataset.image_size=32", "dataset.n_test=4", "run.bootstrap=100",
         "metrics.aopc.patch_size=8", "metrics.aopc.steps=4",
         "models.resnet18.pretrained=false", "models.resnet18.epochs=1",
         "models.joint_unsup.pretrained=false", "models.joint_unsup.epochs=[1,1,1]",
         "models.joint_hybrid.pretrained=false", "models.joint_hybrid.epochs=[1,1,1]"]


def xaibench(*args, cwd):
    # One intra-op thread: tiny models gain nothing from threads, and on a busy machine their
    # idle-spinning threads cost most of the time (8 s instead of 60 s here).
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "xaibench.cli", *args], capture_output=True,
                          text=True, cwd=cwd, env=env)


def small_run(config, out, *extra, cwd):
    sets = [arg for s in SMALL for arg in ("--set", s)]
    return xaibench("run", str(config), *sets, *extra, "--out", str(out), "--device", "cpu",
                    "--no-progress", cwd=cwd)


def test_imagenet_hvz_config_end_to_end(tmp_path):
    root = tmp_path / "hvz"
    write_imagenet_hvz(root)
    out = tmp_path / "results"
    proc = small_run(CONFIG, out, "--set", f"dataset.root={json.dumps(str(root))}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (out / "imagenet_hvz").glob("imagenet_hvz-*")
    board = pd.read_csv(run_dir / "leaderboard.csv")
    assert set(board[["model", "method"]].itertuples(index=False, name=None)) == {
        ("resnet18", "gradcam"), ("joint_unsup", "gradcam"), ("joint_unsup", "joint"),
        ("joint_hybrid", "gradcam"), ("joint_hybrid", "joint")}
    assert (board["n"] == 4).all() and board["relevance_mass_mean"].notna().all()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["config"]["dataset"]["root"] == str(root)
    assert len(list((out / "imagenet_hvz" / "cache" / "data").glob("*/imagenet_hvz-*.pt"))) == 1

    # again, with the root given by --data-root: same run, data, models and scores from the caches
    again = small_run(CONFIG, out, "--data-root", str(root), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    cells = json.loads((run_dir / "manifest.json").read_text())["cells"]
    assert not any(c["computed"] for c in cells)  # data, models, explanations, scores: all reused
    assert pd.read_csv(run_dir / "leaderboard.csv").equals(board)


def test_bad_data_is_a_clear_error_naming_the_file(tmp_path):
    root = tmp_path / "hvz"
    write_imagenet_hvz(root)
    image = root / "images" / "zebra" / "n02391049_103.JPEG"
    image.write_bytes(b"not an image")
    out = tmp_path / "results"
    proc = small_run("imagenet_hvz", out, "--data-root", str(root), cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"xaibench: error: cannot read image {image}: ")
    assert "Traceback" not in proc.stderr
    assert not list(out.rglob("*.pt"))  # no cache written

    proc = small_run("imagenet_hvz", out, "--data-root", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert proc.returncode == 2
    assert (f"[dataset] root: data folder '{tmp_path / 'nowhere'}' does not exist" in proc.stderr
            and "--data-root" in proc.stderr)
