"""Throughput of a sharded run: the same config in 1 process and in N processes under torchrun
(one intra-op thread each), on the same data and models, measured in one invocation; then a
labelled projection of ImageNet validation (50,000 images) from the measured forward passes.

    .venv/bin/python benchmarks/sharding.py --processes 2 --test-images 96

Both runs start from a cache that holds the data and the trained model (trained once, before the
timed runs), so the figures are explaining and scoring only. They also check that the two runs'
tables are byte-identical.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

METHODS = ("gradcam", "integrated_gradients", "occlusion", "saliency", "random")
IMAGENET_VAL = 50_000


def command(out: Path, args: argparse.Namespace, processes: int, *, only_train: bool = False) -> list[str]:
    sets = [f"dataset.n_test={args.test_images}", "run.batch_size=16", "run.threads=1",
            "methods.integrated_gradients={n_steps = 16}", "methods.occlusion={window = 8, stride = 4}",
            *(f"methods.{m}={{}}" for m in METHODS if m not in ("integrated_gradients", "occlusion")),
            "metrics.aopc={patch_size = 8, steps = 8}"]
    if only_train:  # the quick config's own method and metric: the data and the model cells
        sets = sets[:3]
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                 str(processes)] if processes > 1 else [sys.executable])
    return [*launcher, "-m", "xaibench", "run", "quick", "--out", str(out), "--no-progress",
            "--device", "cpu", *(x for s in sets for x in ("--set", s))]


def timed_run(out: Path, args: argparse.Namespace, processes: int) -> tuple[float, Path]:
    start = time.perf_counter()
    subprocess.run(command(out, args, processes), check=True, capture_output=True)
    wall = time.perf_counter() - start
    (run_dir,) = (out / "synthetic").glob("quick-*")
    return wall, run_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--test-images", type=int, default=96)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        subprocess.run(command(base, args, 1, only_train=True), check=True, capture_output=True)
        for folder in (base / "synthetic").glob("quick-*"):
            shutil.rmtree(folder)  # keep the cache (data, model), not the run
        rows, dirs = [], {}
        for n in (1, args.processes):
            out = Path(tmp) / f"p{n}"
            shutil.copytree(base, out)
            wall, run_dir = timed_run(out, args, n)
            timings = json.loads((run_dir / "manifest.json").read_text())["timings"]
            work = timings["explain_s"] + timings["score_s"]
            rows.append({"processes": n, "wall_s": wall, "explain+score_s": work,
                         "images_per_s": args.test_images / work})
            dirs[n] = run_dir
        same = all((dirs[1] / f).read_bytes() == (dirs[args.processes] / f).read_bytes()
                   for f in ("leaderboard.csv", "scores.csv", "curves.csv"))
        costs = pd.read_csv(dirs[1] / "costs.csv")
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    speedup = rows[1]["images_per_s"] / rows[0]["images_per_s"]
    print(f"\nspeed-up with {args.processes} processes: {speedup:.2f}x; tables byte-identical: {same}")
    forwards = costs.groupby("stage")["forwards_per_image"].sum()
    per_image = float(forwards.sum())
    print(f"forward passes per test image (explain {forwards.get('explain', 0):.0f} + score "
          f"{forwards.get('score', 0):.0f}, methods {', '.join(METHODS)}, AOPC 8 steps): {per_image:.0f}")
    print(f"ImageNet validation: {IMAGENET_VAL * per_image / 1e6:.1f} M forward passes (or forward+backward)")


if __name__ == "__main__":
    main()
