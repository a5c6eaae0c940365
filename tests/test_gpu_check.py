"""`make gpu-check` is ready to run: its dry run lists every step and each benchmark it calls
accepts the arguments it is given (checked with --help, on the CPU)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_dry_run_lists_the_steps_and_their_scripts_exist():
    proc = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--dry-run"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    for step in ("CUDA-marked tests", "engine vs quantus", "default benchmark on CUDA", "ROAD imputation",
                 "method costs", "re-explaining metrics vs quantus", "meta-evaluation vs MetaQuantus"):
        assert step in proc.stdout
    total = int(proc.stdout.rsplit("total limit ", 1)[1].split()[0])
    assert total <= 10 * 60  # the whole check fits in one 10-minute command


def test_every_benchmark_the_check_calls_takes_its_arguments():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import gpu_check
    finally:
        sys.path.pop(0)
    for _, cmd, _ in gpu_check.STEPS:
        if not cmd[1].endswith(".py"):
            continue
        proc = subprocess.run([sys.executable, cmd[1], "--help"], cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode == 0, (cmd, proc.stderr)
        flags = [a for a in cmd[2:] if a.startswith("--")]
        assert all(flag in proc.stdout for flag in flags), (cmd, proc.stdout)
