"""How well a joint model's maps localise as it trains: per-epoch validation accuracy and the
share of the map inside the masks (relevance mass), then the test figures.

Trains one joint model of a config (with ``--set`` overrides, as ``xaibench run`` takes them)
exactly as a run would (same data, seeds and phase cache keys), without explaining or scoring
anything else, so training settings can be compared on localisation alone:

    .venv/bin/python benchmarks/joint_localisation.py synthetic joint_hybrid \\
        --set dataset.variant=colour --set 'models.joint_hybrid.epochs=[3,2,20]' \\
        --set 'models.joint_hybrid.patience=[3,3,20]'

The data, the phases and the trained model are cached under ``--cache`` (a run's output folder:
``<cache>/<dataset>/cache/``; default: a fresh temporary folder, so every epoch is trained and
printed).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from xaibench import config as xconfig
from xaibench.methods.joint.train import JointModelConfig
from xaibench.metrics.pompom import pompom
from xaibench.metrics.relevance_mass import relevance_mass
from xaibench.run.execute import load_data, load_model
from xaibench.run.plan import plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="config name or path, e.g. synthetic")
    parser.add_argument("model", help="id of a joint model in the config, e.g. joint_hybrid")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--cache", type=Path, help="phase cache folder (default: a fresh one)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        out = args.cache or Path(tmp)
        cfg = xconfig.load(args.config, [*args.set, f"run.out={json.dumps(str(out))}",
                                         f"run.threads={args.threads}"])
        models = {m.id: m for m in cfg.models if isinstance(m, JointModelConfig)}
        if args.model not in models:
            raise SystemExit(f"no joint model {args.model!r} in {args.config}; joint models: "
                             f"{sorted(models)}")
        model_cfg, the_plan = models[args.model], plan(cfg)
        device = torch.device(the_plan.device)
        splits, _ = load_data(the_plan)  # as a run: the same cells, keys and caches
        if splits.test.masks is None:
            raise SystemExit(f"{cfg.dataset.plugin} has no masks: nothing to localise against")
        start = time.perf_counter()
        # the model's cell of the first training seed ([run] seeds; --set run.seeds=[1] for another)
        cell = next(c for c in the_plan.of_kind("model") if c.model == args.model)
        trained = load_model(the_plan, cell, splits, device)
        train_s = time.perf_counter() - start
    model, history = trained.model, trained.history
    print(f"{args.model} ({model_cfg.arch}, {model_cfg.loss}) on {args.config} {' '.join(args.set)}")
    print("phase epoch  train_acc  val_acc  val_mass")
    for row in history:
        print(f"{row['phase']:>5} {row['epoch']:>5}  {row['train_acc']:9.3f}  {row['val_acc']:7.3f}  "
              f"{row.get('val_mass', float('nan')):8.3f}")
    with torch.no_grad():
        z = torch.cat([model.explain(images)[:, 0].cpu()
                       for images, _, _ in splits.test.batches(cfg.run.batch_size, device=device)])
    masks = splits.test.masks
    mass = relevance_mass(z, masks, positive_only=False)
    mass75 = relevance_mass(z, masks, positive_only=False, threshold=0.75)
    pom = pompom(z, masks, images="positives")
    print(f"test accuracy {trained.test_accuracy:.3f}, mean map {z.mean():.3f}, relevance mass "
          f"inside the masks {mass.nanmean():.3f} ({int((~mass.isnan()).sum())} images with a mask), "
          f"uniform map {masks[masks.flatten(1).any(1)].float().mean():.3f}")
    shares = outside_the_box(z, masks, splits.test.images)
    print("where the rest goes (share of the raw / thresholded map over the positive images): " +
          ", ".join(f"{k} {raw:.3f} / {t75:.3f}" for k, (raw, t75) in shares.items()))
    print(f"RESULT acc={trained.test_accuracy:.3f} mass={mass.nanmean():.3f} mass75={mass75.nanmean():.3f} "
          f"pompom_pos={pom.nanmean():.3f} frame={shares['frame'][0]:.3f} "
          f"background={shares['background'][0]:.3f} train_s={train_s:.0f} threads={args.threads}")


def outside_the_box(z: torch.Tensor, masks: torch.Tensor, images: torch.Tensor,
                    frame: int = 4) -> dict[str, tuple[float, float]]:
    """The share of the map outside the box, over the positive images, raw and thresholded at
    0.75 x max: on the ``frame``-pixel border, on other shapes' ink (non-white pixels), and on the
    background (the rest)."""
    pos = masks.flatten(1).any(1)
    z, masks, images = z[pos], masks[pos], images[pos]
    border = torch.ones_like(masks)
    border[:, frame:-frame, frame:-frame] = False
    border &= ~masks
    ink = (images.amin(1) < 0.9) & ~masks & ~border
    regions = {"frame": border, "ink": ink, "background": ~(masks | border | ink)}
    return {name: tuple(relevance_mass(z, region, positive_only=False, threshold=t).nan_to_num(0.0)
                        .mean().item() for t in (0.0, 0.75))
            for name, region in regions.items()}


if __name__ == "__main__":
    main()
