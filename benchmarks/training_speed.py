"""Seconds per training epoch of a config's models, before and after a change of settings, measured
in one process on the same data (the two settings alternate, so a busy machine slows both alike).

    .venv/bin/python benchmarks/training_speed.py --before models.joint_unsup.explainer_width=32 \
        --before models.joint_hybrid.explainer_width=32

Each plain model trains one epoch (its training step, BatchNorm recalibration and validation); each
joint model trains one epoch of every phase, from the same start. Prints the median over
``--repeats`` of each (model, phase) under both settings and their ratio, with the CPU model and
the thread count.

``--breakdown N`` prints instead where a training step's time goes: the median milliseconds of
the forward pass (with the loss), the backward pass and the optimiser step over N steps of each
model and phase, on the config's batch size (the settings of ``--after``):

    .venv/bin/python benchmarks/training_speed.py --config synthetic_seeds --breakdown 20
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
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


def step_milliseconds(cfg, splits, device: torch.device, steps: int) -> dict[str, dict[str, float]]:
    """{phase label: {"forward", "backward", "optimiser", "step": median ms}} over ``steps``
    training steps (after 3 unmeasured ones) of each of ``cfg``'s phases, from the same start."""
    torch.manual_seed(0)
    model = cfg.build(splits.num_classes, splits.image_size).to(device)
    joint = hasattr(cfg, "phase_key")
    if joint:
        from xaibench.methods.joint import losses
        from xaibench.methods.joint.train import explanation_loss, phase_optimizer, set_phase
    out = {}
    for phase in range(3 if joint else 1):
        if joint:
            set_phase(model, phase, frozen_bn=cfg.frozen_bn)
            optimizer = phase_optimizer(model, cfg, phase)
        else:
            model.train()
            optimizer = cfg.optimizer_for([{"params": list(model.parameters()), "lr": cfg.lr}])
        generator = torch.Generator().manual_seed(0)
        batches = (b for _ in itertools.count()  # epoch after epoch
                   for b in splits.train.batches(cfg.batch_size, device=device, generator=generator))
        times: dict[str, list[float]] = {}
        for i in range(steps + 3):
            images, labels, masks = next(batches)
            t0 = time.perf_counter()
            if joint:
                logits, z = model.forward_with_explanation(images)
                expl = explanation_loss(z, masks, cfg)
                loss = losses.total(logits, labels, expl, alpha=cfg.alpha[phase])[0]
            else:
                loss = torch.nn.functional.cross_entropy(model(images), labels)
            t1 = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            t2 = time.perf_counter()
            optimizer.step()
            t3 = time.perf_counter()
            if i >= 3:
                for key, seconds in (("forward", t1 - t0), ("backward", t2 - t1), ("optimiser", t3 - t2),
                                     ("step", t3 - t0)):
                    times.setdefault(key, []).append(seconds)
        label = f"phase {phase + 1}" if joint else "-"
        out[label] = {k: 1000 * statistics.median(v) for k, v in times.items()}
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
    parser.add_argument("--breakdown", type=int, default=0, metavar="N",
                        help="print the forward, backward and optimiser milliseconds of N steps instead")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    configs = {name: load(args.config, ["run.out=\"/tmp/xaibench-training-speed\"", *extra])
               for name, extra in (("before", args.before), ("after", args.after))}
    the_plan = plan(configs["after"])
    splits, _ = load_data(the_plan, join("cpu"))
    device = torch.device("cpu")
    if args.breakdown:
        print(f"{cpu_model()}, {torch.get_num_threads()} threads, config {args.config}, median ms of "
              f"{args.breakdown} steps")
        print(f"{'model':<14} {'phase':<8} {'forward':>8} {'backward':>9} {'optimiser':>10} {'step':>7}")
        for cfg in (m for m in configs["after"].models if args.models is None or m.id in args.models):
            for phase, ms in step_milliseconds(cfg, splits, device, args.breakdown).items():
                print(f"{cfg.id:<14} {phase:<8} {ms['forward']:8.1f} {ms['backward']:9.1f} "
                      f"{ms['optimiser']:10.1f} {ms['step']:7.1f}")
        return
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
