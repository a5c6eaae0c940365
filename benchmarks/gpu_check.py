"""The GPU check (`make gpu-check`): one script, meant to finish in under 10 minutes (one device
command) on one H100/H200, that runs the CUDA-marked tests and the benchmarks on CUDA and writes
every figure to one file.

    .venv/bin/python benchmarks/gpu_check.py                 # on a machine with CUDA
    .venv/bin/python benchmarks/gpu_check.py --dry-run       # print the steps (any machine)

Steps (each with its own time limit, so one slow step cannot eat the others' time):

1. the device's name, torch and CUDA versions;
2. the test suite's CUDA-marked tests (`pytest -m cuda`: the method contract on CUDA, engine
   curves equal to the CPU's, ...);
3. the perturbation engine against Quantus on ResNet50 at 224 px: fp32 (curves compared with
   Quantus') and bf16 + channels_last (benchmarks/engine.py --case cuda);
4. the default benchmark on CUDA from nothing cached (`xaibench run synthetic --device cuda`
   into a temporary folder): its wall time; its leaderboard, models, costs and manifest are
   copied next to the figures as bench_<name>;
5. ROAD: the batched imputation against the per-image reference (benchmarks/road.py --device cuda);
6. seconds and forward passes per image of every method on a ResNet50 at 224 px, and each one's
   peak GPU memory on a batch of 64 against an 8 GiB memory budget (benchmarks/method_costs.py);
7. the re-explaining metrics (max_sensitivity, local_lipschitz, relative_input_stability,
   smooth_mprt) against Quantus on the same noise: equal numbers and the speed of batching
   (benchmarks/robustness.py --device cuda);
8. the meta-evaluation of AOPC over 6 methods on 50 images of a ResNet-50 at 224 px against
   MetaQuantus's own loop (benchmarks/meta.py --device cuda --model resnet50).

The output goes to results/gpu_check/gpu_check-<date>.txt (and is printed), rewritten after every
step so a run cut short keeps what it measured; copy its figures into the README with the device
name.
"""

from __future__ import annotations

import argparse
import datetime
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
STEPS: list[tuple[str, list[str], int]] = [
    ("device", [PY, "-c", "import torch; print(torch.cuda.get_device_name(0), 'torch', torch.__version__, "
                          "'cuda', torch.version.cuda)"], 30),
    ("CUDA-marked tests", [PY, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider"], 75),
    ("engine vs quantus, ResNet50 224 px",
     [PY, "benchmarks/engine.py", "--case", "cuda", "--repeat", "2"], 95),
    ("default benchmark on CUDA, nothing cached",
     [PY, "-m", "xaibench", "run", "synthetic", "--device", "cuda", "--no-progress", "--out", "{tmp}"], 100),
    ("ROAD imputation, batched vs reference", [PY, "benchmarks/road.py", "--device", "cuda"], 50),
    ("method costs and peak memory, ResNet50 224 px, batch 64",
     [PY, "benchmarks/method_costs.py", "--device", "cuda", "--arch", "resnet50", "--size", "224",
      "--images", "64", "--memory", "8GiB"], 110),
    ("re-explaining metrics vs quantus",
     [PY, "benchmarks/robustness.py", "--device", "cuda", "--images", "16", "--size", "64", "--samples", "10",
      "--smooth-samples", "5", "--repeat", "1"], 25),
    ("meta-evaluation vs MetaQuantus, ResNet50 224 px",
     [PY, "benchmarks/meta.py", "--device", "cuda", "--model", "resnet50", "--images", "50", "--size", "224",
      "--perturbations", "2", "--estimator", "xaibench", "--channels-last"], 115),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="print the steps, run nothing")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "gpu_check")
    args = parser.parse_args()
    missing = [cmd[1] for _, cmd, _ in STEPS if cmd[1].endswith(".py") and not (ROOT / cmd[1]).is_file()]
    if missing:
        print(f"gpu_check: missing benchmark script(s): {', '.join(missing)}", file=sys.stderr)
        return 2
    if args.dry_run:
        for name, cmd, limit in STEPS:
            print(f"{name} (limit {limit} s): {' '.join(cmd[1:])}")
        print(f"total limit {sum(limit for *_, limit in STEPS)} s")
        return 0
    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; run it where one is (or --dry-run)", file=sys.stderr)
        return 2
    lines = [f"# xaibench GPU check, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC"]
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"gpu_check-{datetime.date.today()}.txt"
    failed = 0
    with tempfile.TemporaryDirectory(prefix="xaibench-gpu-check-") as tmp:
        for name, cmd, limit in STEPS:
            cmd = [part.replace("{tmp}", tmp) for part in cmd]
            start = time.perf_counter()
            try:
                proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=limit)
                status, text = f"rc {proc.returncode}", proc.stdout + proc.stderr[-3000:]
                failed += proc.returncode != 0
            except subprocess.TimeoutExpired as exc:
                out = (exc.stdout or b"") + b"\n" + (exc.stderr or b"")[-3000:]  # bytes, even with text=True
                status, text = f"timed out after {limit} s", out.decode(errors="replace")
                failed += 1
            status += f", {time.perf_counter() - start:.0f} s"
            lines += [f"\n## {name} ({status})", f"$ {' '.join(cmd[1:])}", text.rstrip()]
            print("\n".join(lines[-3:]), flush=True)
            path.write_text("\n".join(lines) + "\n")
        for run in Path(tmp).glob("*/*/"):  # the benchmark run's tables, kept beside the figures
            for name in ("leaderboard.csv", "models.csv", "costs.csv", "manifest.json"):
                if (run / name).is_file():
                    shutil.copy(run / name, args.out / f"bench_{name}")
    print(f"\nwrote {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
