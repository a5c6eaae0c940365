"""How well a joint model's maps localise as it trains: per-epoch validation accuracy and the
share of the map inside the masks (relevance mass), then the test figures.

Trains one joint model of a config (with ``--set`` overrides, as ``xaibench run`` takes them)
exactly as a run would (same data, seeds and phase cache keys), without explaining or scoring
anything else, so training settings can be compared on localisation alone:

    .venv/bin/python benchmarks/joint_localisation.py synthetic joint_hybrid \\
        --set dataset.variant=colour --set 'models.joint_hybrid.epochs=[3,2,20]' \\
        --set 'models.joint_hybrid.patience=[3,3,20]'

Phases are cached under ``--cache`` (default: a fresh temporary folder, so every epoch is
trained and printed).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from xaibench import config as xconfig
from xaibench.io import config_hash
from xaibench.methods.joint.train import JointModelConfig, train_joint
from xaibench.metrics.relevance_mass import relevance_mass
from xaibench.models import build_model
from xaibench.plugins import build
from xaibench.registry import DATASETS
from xaibench.runner import resolve_device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="config name or path, e.g. synthetic")
    parser.add_argument("model", help="id of a joint model in the config, e.g. joint_hybrid")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--cache", type=Path, help="phase cache folder (default: a fresh one)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cfg = xconfig.load(args.config, args.set)
    models = {m.id: m for m in cfg.models if isinstance(m, JointModelConfig)}
    if args.model not in models:
        raise SystemExit(f"no joint model {args.model!r} in {args.config}; joint models: {sorted(models)}")
    model_cfg, seed = models[args.model], cfg.run.seed
    device = resolve_device(cfg.run.device)
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache or Path(tmp)
        splits = build(DATASETS.get(cfg.dataset.plugin), cfg.dataset.as_dict()).load(
            cache_dir=cache / "data", seed=seed)
        if splits.test.masks is None:
            raise SystemExit(f"{cfg.dataset.plugin} has no masks: nothing to localise against")
        data_key = config_hash("data", cfg.resolved()["dataset"], seed,
                               *([splits.fingerprint] if splits.fingerprint else []))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # as the runner builds a model
            model = build_model(model_cfg, splits.num_classes, splits.image_size).to(device)
        history = train_joint(model, splits, model_cfg, device=device, seed=seed, progress=False,
                              cache_dir=cache / "models", data_key=data_key)
    print(f"{args.model} ({model_cfg.arch}, {model_cfg.loss}) on {args.config} {' '.join(args.set)}")
    print("phase epoch  train_acc  val_acc  val_mass")
    for row in history:
        print(f"{row['phase']:>5} {row['epoch']:>5}  {row['train_acc']:9.3f}  {row['val_acc']:7.3f}  "
              f"{row.get('val_mass', float('nan')):8.3f}")
    maps, correct = [], 0
    with torch.no_grad():
        for images, labels, _ in splits.test.batches(cfg.run.batch_size, device=device):
            logits, z = model.forward_with_explanation(images)
            correct += (logits.argmax(1) == labels).sum().item()
            maps.append(z[:, 0].cpu())
    z = torch.cat(maps)
    mass = relevance_mass(z, splits.test.masks, positive_only=False)
    print(f"test accuracy {correct / len(splits.test):.3f}, mean map {z.mean():.3f}, relevance mass "
          f"inside the masks {mass.nanmean():.3f} ({int((~mass.isnan()).sum())} images with a mask), "
          f"uniform map {splits.test.masks[splits.test.masks.flatten(1).any(1)].float().mean():.3f}")


if __name__ == "__main__":
    main()
