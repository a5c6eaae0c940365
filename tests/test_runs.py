"""Runs as grids of cached cells: reproducibility, resume after kill -9 and Ctrl-C, corrupt cache
files, per-method invalidation, merged leaderboards, plots from a run folder, bad input."""

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from xaibench.cli import main

# Four methods, two with one shard per batch of 4 images (4 shards each), three metrics.
CONFIG = """
[run]
seed = 0
device = "cpu"
batch_size = 4
bootstrap = 100

[dataset]
name = "synthetic"
variant = "colour"
image_size = 32
n_train = 32
n_val = 8
n_test = 16
radius = [3, 6]
n_shapes = [1, 3]

[models.resnet18]
arch = "resnet18"
epochs = 1
batch_size = 32

[methods.gradcam]

[methods.occlusion]
window = 16
stride = 8

[methods.saliency]

[methods.random]

[metrics.aopc]
patch_size = 8
steps = 4
lerf = false

[metrics.relevance_mass]

[metrics.pompom]
"""


def command(cfg: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "xaibench.cli", "run", str(cfg), "--out", str(out),
            "--no-progress", *extra]


def run_dir(out: Path) -> Path:
    (found,) = (out / "synthetic").glob("runs-*")
    return found


def cache_files(out: Path) -> dict[str, int]:
    """Every finished cache file (no temporaries) -> its modification time in ns."""
    return {str(p.relative_to(out)): p.stat().st_mtime_ns
            for p in (out / "synthetic" / "cache").rglob("*.pt") if not p.name.startswith(".")}


def cells(out: Path) -> dict[str, dict]:
    """name ("data", "resnet18", "resnet18/gradcam", "resnet18/gradcam/aopc") -> manifest cell."""
    return {c["name"]: c for c in json.loads((run_dir(out) / "manifest.json").read_text())["cells"]}


@pytest.fixture(scope="module")
def cfg(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "runs.toml"
    path.write_text(CONFIG)
    return path


@pytest.fixture(scope="module")
def reference(cfg, tmp_path_factory) -> Path:
    """An uninterrupted run of CONFIG; returns its out folder."""
    out = tmp_path_factory.mktemp("reference")
    proc = subprocess.run(command(cfg, out), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return out


def test_two_fresh_runs_are_byte_identical(cfg, reference, tmp_path):
    proc = subprocess.run(command(cfg, tmp_path), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    for name in ("leaderboard.csv", "scores.csv", "curves.csv", "models.csv"):
        assert (run_dir(tmp_path) / name).read_bytes() == (run_dir(reference) / name).read_bytes(), name
    board = pd.read_csv(run_dir(reference) / "leaderboard.csv")
    assert board.set_index("method")["control"].to_dict() == {
        "gradcam": False, "occlusion": False, "saliency": False, "random": True}
    assert all(c["computed"] for c in cells(tmp_path).values())  # nothing was shared between the two


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, f"the run ended before it could be interrupted: {proc.communicate()}"
        assert time.monotonic() < deadline, "timed out waiting for the run"
        time.sleep(0.02)


def occlusion_shards(out: Path) -> list[Path]:
    return [p for p in (out / "synthetic" / "cache" / "attributions").glob("resnet18-occlusion-*/*.pt")
            if not p.name.startswith(".")]


def test_run_killed_mid_way_resumes_only_unfinished_cells(cfg, reference, tmp_path):
    proc = subprocess.Popen(command(cfg, tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for(lambda: (tmp_path / "synthetic" / "cache").is_dir() and len(occlusion_shards(tmp_path)) >= 1,
             proc)
    proc.send_signal(signal.SIGKILL)  # kill -9 while the occlusion cell is half done
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    before = cache_files(tmp_path)
    done_shards = len(occlusion_shards(tmp_path))
    assert 1 <= done_shards < 4, "the kill should land inside the 4-shard occlusion cell"
    assert not list((tmp_path / "synthetic").glob("runs-*/leaderboard.csv"))  # it did not finish

    resumed = subprocess.run(command(cfg, tmp_path), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    log = cells(tmp_path)
    assert log["resnet18"]["computed"] is False  # the model was read from the cache
    assert log["resnet18/occlusion"]["computed_shards"] == 4 - done_shards
    for name, c in log.items():
        if c["kind"] == "score":
            _, method, metric = name.split("/")
            was_there = any(f"-{method}-{metric}-" in p for p in before if "/scores/" in p)
            assert c["computed"] != was_there, c
    assert any(c["computed"] for c in log.values())  # the resumed run did finish work
    after = cache_files(tmp_path)
    assert all(after[p] == t for p, t in before.items())  # finished files were not rewritten
    for name in ("leaderboard.csv", "scores.csv", "curves.csv"):
        assert (run_dir(tmp_path) / name).read_bytes() == (run_dir(reference) / name).read_bytes(), name


def test_ctrl_c_exits_cleanly_and_says_how_to_resume(cfg, tmp_path):
    proc = subprocess.Popen(command(cfg, tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    wait_for(lambda: (tmp_path / "synthetic" / "cache").is_dir() and len(occlusion_shards(tmp_path)) >= 1,
             proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "run the same command again" in err
    assert "Traceback" not in err
    leftovers = [p for p in (tmp_path / "synthetic").rglob(".*.tmp")]
    assert leftovers == []  # atomic writes clean up after themselves on Ctrl-C


def test_a_full_disk_is_one_line_that_says_what_to_do(cfg, tmp_path, monkeypatch, capsys):
    def full(fd):  # the first write that reaches the disk finds it full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    rc = main(["run", str(cfg), "--out", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1, err
    (line,) = [x for x in err.splitlines() if x.strip()]
    assert "no space left on the device" in line and str(tmp_path) in line
    assert re.search(r"\(writing \S+\.\w+\)", line), line  # the very file that did not fit
    assert "run the same command again" in line
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []  # no temporary, no half file


def test_other_os_errors_are_not_reported_as_a_full_disk(cfg, tmp_path, monkeypatch):
    def broken(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError, match="Input/output error"):
        main(["run", str(cfg), "--out", str(tmp_path), "--no-progress"])


def test_corrupt_cache_files_are_detected_and_recomputed(cfg, reference, tmp_path):
    out = tmp_path / "out"
    subprocess.run(["cp", "-r", str(reference), str(out)], check=True)
    cache = out / "synthetic" / "cache"
    (shard,) = list(cache.glob("attributions/resnet18-saliency-*/00002.pt"))
    (score_cell,) = list(cache.glob("scores/resnet18-gradcam-aopc-*.pt"))
    (model_ckpt,) = list(cache.glob("models/resnet18-*.pt"))
    blob = bytearray(shard.read_bytes())
    blob[-10] ^= 0xFF  # one flipped byte in the payload
    shard.write_bytes(bytes(blob))
    score_cell.write_bytes(score_cell.read_bytes()[: 200])  # a truncated file
    proc = subprocess.run(command(cfg, out), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    log = cells(out)
    assert log["resnet18/saliency"]["computed_shards"] == 1
    assert log["resnet18/gradcam/aopc"]["computed"] is True
    assert log["resnet18"]["computed"] is False
    assert sum(c["computed"] for c in log.values()) == 2
    assert model_ckpt.exists()
    for name in ("leaderboard.csv", "scores.csv"):
        assert (run_dir(out) / name).read_bytes() == (run_dir(reference) / name).read_bytes(), name


def test_changing_one_method_recomputes_only_its_cells(cfg, reference, tmp_path):
    out = tmp_path / "out"
    subprocess.run(["cp", "-r", str(reference), str(out)], check=True)
    proc = subprocess.run(command(cfg, out, "--set", "methods.occlusion.stride=16"),
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    (new_dir,) = [d for d in (out / "synthetic").glob("runs-*") if d.name != run_dir(reference).name]
    log = json.loads((new_dir / "manifest.json").read_text())["cells"]
    computed = {(c["kind"], c["name"].split("/")[1]) for c in log if c["computed"]}
    assert computed == {("explain", "occlusion"), ("score", "occlusion")}
    assert "4 of 18 cells computed" in proc.stdout  # 1 explain + 3 score cells


def test_run_folder_has_report_costs_and_plots(reference):
    folder = run_dir(reference)
    report = (folder / "report.md").read_text()
    assert "## Leaderboard" in report and "random (control)" in report
    for figure in ("aopc_morf", "aopc_vs_steps", "gallery_resnet18", "pompom_bars",
                   "metric_agreement", "cost_quality"):
        assert (folder / "plots" / f"{figure}.png").stat().st_size > 1000, figure
        assert f"(plots/{figure}.png)" in report
    assert "Ranks come from paired comparisons on the same images" in report
    board = pd.read_csv(folder / "leaderboard.csv")
    for column in ("accuracy_ci_low", "accuracy_ci_high", "chance", "above_chance", "aopc_rank",
                   "aopc_rank_worst", "aopc_beats_controls"):
        assert column in board, column
    assert (board["aopc_rank"] <= board["aopc_rank_worst"]).all()
    assert board.loc[board["control"], "aopc_beats_controls"].isna().all()
    from xaibench.io import load_checked

    gallery = load_checked(folder / "gallery.pt")  # every class, and what the model predicted
    assert set(gallery["labels"].tolist()) == {0, 1}
    assert gallery["predictions"]["resnet18"].shape == gallery["labels"].shape
    costs = pd.read_csv(folder / "costs.csv")
    explain = costs[costs["stage"] == "explain"].set_index("method")
    # forward passes counted on the model: 1 per image for a gradient, 0 for a control,
    # one per occluded copy plus the clean image for occlusion (3 x 3 windows at 32 px)
    assert explain.loc["saliency", "forwards_per_image"] == 1
    assert explain.loc["random", "forwards_per_image"] == 0
    assert explain.loc["occlusion", "forwards_per_image"] == 3 * 3 + 1
    aopc = costs[(costs["stage"] == "score") & (costs["metric"] == "aopc")]
    assert (aopc["forwards_per_image"] == 5).all()  # MoRF only: steps + 1
    assert (costs["peak_mem_mb"] > 0).all() and (costs["seconds_per_image"] >= 0).all()


def test_plot_command_redraws_from_the_run_folder(reference, tmp_path, capsys):
    subprocess.run(["cp", "-r", str(reference), str(tmp_path / "out")], check=True)
    folder = run_dir(tmp_path / "out")
    for png in (folder / "plots").glob("*.png"):
        png.unlink()
    assert main(["plot", "gallery", str(folder)]) == 0
    assert (folder / "plots" / "gallery_resnet18.png").exists()
    assert not (folder / "plots" / "aopc_morf.png").exists()
    assert main(["plot", "aopc-grid", str(folder)]) == 1  # one AOPC metric: nothing to draw
    assert "needs two AOPC metrics" in capsys.readouterr().err
    assert main(["plot", "all", str(folder)]) == 0
    assert (folder / "plots" / "aopc_morf.png").exists() and (folder / "report.md").exists()
    assert main(["plot", "tradeoff", str(folder)]) == 0  # from the run's cached model and maps
    table = pd.read_csv(folder / "plots" / "tradeoff.csv")
    assert set(table["method"]) == {"gradcam", "occlusion", "saliency", "random"}
    assert table["activation"].between(0, 1).all() and table["reidentification"].between(0, 1).all()
    assert (folder / "plots" / "tradeoff_resnet18.png").exists()
    assert main(["plot", "curves", str(tmp_path)]) == 2
    assert "is not a finished run folder: leaderboard.csv is missing" in capsys.readouterr().err


def test_leaderboard_merges_runs_with_spread_and_agreement(reference, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    subprocess.run(["cp", "-r", str(run_dir(reference)), str(a)], check=True)
    subprocess.run(["cp", "-r", str(run_dir(reference)), str(b)], check=True)
    scores = pd.read_csv(b / "scores.csv")  # a second "seed": gradcam's AOPC 0.1 higher on every image
    scores.loc[(scores["method"] == "gradcam") & (scores["metric"] == "aopc"), "value"] += 0.1
    scores.to_csv(b / "scores.csv", index=False)
    out = tmp_path / "merged"
    assert main(["leaderboard", str(a), str(b), "--out", str(out)]) == 0
    merged = pd.read_csv(out / "merged_leaderboard.csv").set_index("method")
    original = pd.read_csv(a / "leaderboard.csv").set_index("method")
    assert (merged["runs"] == 2).all()
    assert merged.loc["gradcam", "aopc_mean"] == pytest.approx(original.loc["gradcam", "aopc_mean"] + 0.05,
                                                               rel=1e-5)
    assert merged.loc["gradcam", "aopc_ci_low"] < merged.loc["gradcam", "aopc_mean"] < \
        merged.loc["gradcam", "aopc_ci_high"]
    assert merged.loc["gradcam", "aopc_std"] == pytest.approx(0.1 / 2**0.5)
    assert merged.loc["saliency", "aopc_std"] == pytest.approx(0.0)
    agreement = pd.read_csv(out / "metric_agreement.csv").set_index("metric")
    assert list(agreement.columns) == ["aopc", "relevance_mass", "pompom"]
    for m in agreement.columns:
        assert agreement.loc[m, m] == pytest.approx(1.0)
    assert (out / "metric_agreement.png").exists()
    assert "Kendall tau" in capsys.readouterr().out
    assert main(["leaderboard", str(a), str(a), "--out", str(out)]) == 2


def test_compare_says_whether_a_second_run_reproduces_the_first(reference, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    subprocess.run(["cp", "-r", str(run_dir(reference)), str(a)], check=True)
    subprocess.run(["cp", "-r", str(run_dir(reference)), str(b)], check=True)
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "accuracy: 1 of 1 models within 0.05" in out and "reproduces" in out
    n = int(out.split("metric means: ")[1].split(" of ")[0])
    assert f"  resnet18: {n} of {n}" in out  # the one model's count
    board = pd.read_csv(a / "leaderboard.csv")
    row = board["method"] == "gradcam"
    low, mean, high = board.loc[row, ["aopc_ci_low", "aopc_mean", "aopc_ci_high"]].iloc[0]
    shifted = board.copy()
    # b's interval moved by 0.9 of a's narrower half: each mean stays inside the other's interval
    shifted.loc[row, ["aopc_mean", "aopc_ci_low", "aopc_ci_high"]] += 0.9 * min(mean - low, high - mean)
    shifted["accuracy"] += 0.04
    shifted.to_csv(b / "leaderboard.csv", index=False)
    assert main(["compare", str(a), str(b)]) == 0
    shifted.loc[row, ["aopc_mean", "aopc_ci_low", "aopc_ci_high"]] = [high + 0.01, mean, high + 0.02]
    shifted.to_csv(b / "leaderboard.csv", index=False)
    assert main(["compare", str(b), str(a)]) == 1  # symmetric: the order does not matter
    out = capsys.readouterr().out
    assert "not reproduced" in out and "gradcam" in out and "aopc" in out
    assert "saliency" not in out.split("not reproduced")[1]
    shifted = board.assign(accuracy=board["accuracy"] - 0.06)
    shifted.to_csv(b / "leaderboard.csv", index=False)
    assert main(["compare", str(a), str(b)]) == 1
    assert "accuracy: 0 of 1 models within 0.05" in capsys.readouterr().out
    assert main(["compare", str(a), str(b), "--accuracy-tolerance", "0.1"]) == 0
    assert main(["compare", str(a), str(b), "--accuracy-tolerance", "2"]) == 2
    board[board["method"] != "saliency"].to_csv(b / "leaderboard.csv", index=False)  # a row missing
    assert main(["compare", str(a), str(b)]) == 1
    assert "saliency" in capsys.readouterr().out.split("not reproduced")[1]
    assert main(["compare", str(a), str(tmp_path)]) == 2
    assert "is not a finished run folder" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["typo", "masks", "patch", "unwritable", "checkpoint", "checkpoint_size",
                                  "cuda"])
def test_bad_input_fails_before_work_and_writes_nothing(case, reference, tmp_path):
    if case == "cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    out = tmp_path / "out"
    cfg = tmp_path / "bad.toml"
    text = CONFIG
    if case == "typo":
        text = text.replace("steps = 4", "stesp = 4")
        expect = r"\[metrics.aopc\] stesp: unknown key; allowed keys: .*steps"
    elif case == "masks":  # a real image folder without masks
        from PIL import Image

        root = tmp_path / "data"
        for cls in ("a", "b"):
            (root / "images" / cls).mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (32, 32), (i * 90, 0, 0)).save(root / "images" / cls / f"{i}.png")
        text = text.replace('name = "synthetic"', f'name = "folder"\nroot = "{root}"\nmasks = "none"') \
            .replace('variant = "colour"\n', "").replace("image_size = 32\nn_train = 32\nn_val = 8\n"
                                                        "n_test = 16\nradius = [3, 6]\nn_shapes = [1, 3]\n",
                                                        "image_size = 32\n")
        expect = r"\[metrics.relevance_mass\] needs ground-truth masks, but dataset 'folder' has none"
    elif case == "patch":
        text = text.replace("patch_size = 8", "patch_size = 64")
        expect = r"\[metrics.aopc\] patch_size: 64 is larger than the 32x32 images"
    elif case == "unwritable":
        blocker = tmp_path / "file"
        blocker.write_text("")
        out = blocker / "results"
        expect = r"cannot write under"
    elif case == "cuda":
        text = text.replace('device = "cpu"', 'device = "cuda"')
        expect = r"\[run\] device: 'cuda' requested but CUDA is not available here; use device = 'cpu'"
    else:
        (ckpt,) = list((reference / "synthetic" / "cache" / "models").glob("resnet18-*.pt"))
        if case == "checkpoint":
            text = text.replace('arch = "resnet18"', f'arch = "vgg16"\ncheckpoint = "{ckpt}"')
            expect = r"\[models.resnet18\] checkpoint: .* holds a resnet18 model, but arch = 'vgg16'"
        else:
            text = text.replace('arch = "resnet18"', f'arch = "resnet18"\ncheckpoint = "{ckpt}"')
            text = text.replace("image_size = 32", "image_size = 64")
            expect = (r"\[models.resnet18\] checkpoint: .* was trained on 32x32 images, but the dataset "
                      r"yields 64x64; use the matching image_size")
    cfg.write_text(text)
    proc = subprocess.run(command(cfg, out), capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert re.search(expect, proc.stderr), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def test_checkpoint_of_the_right_arch_is_evaluated_not_retrained(cfg, reference, tmp_path):
    (ckpt,) = list((reference / "synthetic" / "cache" / "models").glob("resnet18-*.pt"))
    text = CONFIG.replace('arch = "resnet18"', f'arch = "resnet18"\ncheckpoint = "{ckpt}"')
    text = text.replace("[methods.occlusion]\nwindow = 16\nstride = 8\n", "")
    path = tmp_path / "ckpt.toml"
    path.write_text(text)
    proc = subprocess.run(command(path, tmp_path / "out"), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    (folder,) = (tmp_path / "out" / "synthetic").glob("ckpt-*")
    board = pd.read_csv(folder / "leaderboard.csv").set_index("method")
    ref = pd.read_csv(run_dir(reference) / "leaderboard.csv").set_index("method")
    assert board.loc["gradcam", "accuracy"] == ref.loc["gradcam", "accuracy"]
    assert board.loc["gradcam", "aopc_mean"] == ref.loc["gradcam", "aopc_mean"]
    assert not list((tmp_path / "out" / "synthetic" / "cache").glob("models/*.pt"))  # no training
    assert os.path.exists(ckpt)


def test_attribution_shards_keep_tiny_maps():
    import torch

    from xaibench.io import from_half, to_half

    maps = torch.tensor([[[3e-9, -1e-9], [0.0, 2e-10]], [[0.0, 0.0], [0.0, 0.0]],
                         [[1.0, 1e-3], [-5.0, 0.25]]])
    back = from_half(to_half(maps))
    assert torch.allclose(back, maps, rtol=1e-3, atol=0)  # plain .half() gives all zeros for map 0
    assert (back[1] == 0).all() and back.dtype == torch.float32
    assert maps[0].half().eq(0).all()


def test_an_interrupt_swallowed_by_a_callback_still_stops_the_run():
    from xaibench.run.execute import check_interrupted, interruptible

    with interruptible():
        try:  # e.g. a finalizer or hook where Python only prints "Exception ignored"
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        except KeyboardInterrupt:
            pass
        with pytest.raises(KeyboardInterrupt):
            check_interrupted()  # the next shard or cell boundary
    check_interrupted()  # cleared when the run ends: nothing raised
