"""Seconds per training epoch of a config's models, before and after a change of settings, measured
in one process on the same data (the two settings alternate, so a busy machine slows both alike).

    .venv/bin/python benchmarks/training_speed.py --before models.joint_unsup.explainer_width=32 \
        --before models.joint_hybrid.explainer_width=32

Each plain model trains one epoch (its training step, BatchNorm recalibration and validation); each
joint model trains one epoch of every phase, from the same start. Prints the median over
``--repeats`` of each (model, phase) under both settings and their ratio, with the CPU model and
the thread count.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch

from xaibench.config import load
from xaibench.run.distributed import join
from xaibench.run.execute import load_data
from xaibench.run.plan import plan
from xaibench.run.writer import cpu_model


def epoch_seconds(cfg, splits, device: torch.device) -> dict[str, float]:
    """{phase label: seconds} for one epoch of each of ``cfg``'s phases."""
    model = cfg.build(splits.num_classes, splits.image_size).to(device)
    if not hasattr(cfg, "phase_key"):  # a plain backbone
        one = dataclasses.replace(cfg, epochs=1)
        start = time.perf_counter()
        one.fit(model, splits, device=device, seed=0, progress=False)
        return {"epoch": time.perf_counter() - start}
    from xaibench.methods.joint.train import train_phase

    one = dataclasses.replace(cfg, epochs=(1, 1, 1))
    out = {}
    for phase in range(3):
        start = time.perf_counter()
        train_phase(model, splits, one, phase, device=device, seed=0, progress=False)
        out[f"phase {phase + 1}"] = time.perf_counter() - start
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="synthetic")
    parser.add_argument("--before", action="append", default=[], metavar="KEY=VALUE",
                        help="an override of the 'before' setting (repeatable)")
    parser.add_argument("--after", action="append", default=[], metavar="KEY=VALUE",
                        help="an override of the 'after' setting (repeatable; default: the config)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", nargs="*", default=None, help="the model ids to time (default: all)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    configs = {name: load(args.config, ["run.out=\"/tmp/xaibench-training-speed\"", *extra])
               for name, extra in (("before", args.before), ("after", args.after))}
    the_plan = plan(configs["after"])
    splits, _ = load_data(the_plan, join("cpu"))
    device = torch.device("cpu")
    times: dict[tuple[str, str, str], list[float]] = {}
    for _ in range(args.repeats):
        for name, config in configs.items():
            for cfg in (m for m in config.models if args.models is None or m.id in args.models):
                for phase, seconds in epoch_seconds(cfg, splits, device).items():
                    times.setdefault((cfg.id, phase, name), []).append(seconds)
    print(f"{cpu_model()}, {torch.get_num_threads()} threads, {args.repeats} repeats, config {args.config}")
    print(f"{'model':<14} {'phase':<8} {'before s':>9} {'after s':>9} {'ratio':>6}")
    for model, phase in dict.fromkeys((m, p) for m, p, _ in times):
        before = statistics.median(times[(model, phase, "before")])
        after = statistics.median(times[(model, phase, "after")])
        print(f"{model:<14} {phase:<8} {before:9.2f} {after:9.2f} {before / after:6.2f}")


if __name__ == "__main__":
    main()
