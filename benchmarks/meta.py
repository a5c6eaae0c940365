"""The meta-evaluation of AOPC over several methods against MetaQuantus's own loop on the same
settings: the numbers, and the speed.

    nice -n 15 .venv/bin/python benchmarks/meta.py --images 8 --size 32 --perturbations 2   # tiny
    .venv/bin/python benchmarks/meta.py --images 64 --size 32 --perturbations 2 \
        --adversary-sigma 1.0 --estimator xaibench --channels-last --repeat 3   # about 3 min on 2 cores
    .venv/bin/python benchmarks/meta.py --device cuda --model resnet50 --images 50 --size 224 \
        --perturbations 2 --estimator xaibench --channels-last   # make gpu-check

A plain CNN (random weights, 10 classes) explains --images random images of --size px with the
methods of --methods, for the class it predicts. AOPC (MoRF, --patch-size patches, --steps
steps, black substrate, softmax score) is meta-evaluated with MetaQuantus's four tests
(K = --perturbations, --iterations).

- xaibench: the functions the run uses (:mod:`xaibench.run.meta`): each perturbed model or batch
  of images explained once per method (batched ``attribute``), scored by xaibench's AOPC on the
  batched perturbation engine on the images the test keeps (the others' scores are never read),
  then :mod:`xaibench.meta.consistency`. ``--channels-last`` sets AOPC's ``channels_last``
  (channels-last inputs to the model; on either side when MetaQuantus's estimator is xaibench's).
- MetaQuantus: ``MetaEvaluation`` (version 0.0.5) with its own ``ModelPerturbationTest`` and
  ``InputPerturbationTest`` loops; the estimator is Quantus's ``RegionPerturbation`` (the curves
  xaibench's engine equals, tests/test_quantus_agreement.py) turned into AOPC per image, the
  explain function the same xaibench methods. Its model noise is replaced, for the call, by
  xaibench's seeded draws (its wrapper's ``sample``), so both sides perturb the same weights;
  ``score_direction=None``, under which its adversary IEC counts a lower score as worse (right
  for AOPC; "higher" would invert it, docs/meta.md).

The model tests must agree number for number. The input tests cannot: MetaQuantus's input test
explains the unperturbed images and scores those maps on the perturbed ones, with its own NumPy
noise; xaibench re-explains the perturbed images (docs/meta.md). Times are the whole
meta-evaluation on each side (unperturbed scores included), the fastest of --repeat runs, after
both sides' libraries are imported and every method has run once (:func:`warm_up`).
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections import deque

import numpy as np
import torch
from torch import nn

from xaibench.meta import consistency as mc
from xaibench.meta.perturb import noisy_model
from xaibench.params import build
from xaibench.registry import METHODS, METRICS
from xaibench.run.execute import score_shard
from xaibench.run.meta import perturbed, predictions
from xaibench.run.writer import cpu_model
from xaibench.seeding import derive_seed

NOISE = {"model_resilience": 0.001, "model_adversary": 0.5, "input_resilience": 0.001,
         "input_adversary": 5.0}
DEVICE = torch.device("cpu")
QUIET = {"disable_warnings": True, "display_progressbar": False}


def cnn(seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1),
                        nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return net.eval()


def resnet50(seed: int = 0) -> nn.Module:
    """torchvision's ResNet-50 with seeded random weights (nothing downloaded)."""
    import torchvision

    torch.manual_seed(seed)
    return torchvision.models.resnet50(weights=None).eval()


def scores(metric, model, images, targets, maps) -> np.ndarray:
    return score_shard(metric, model, images, targets, maps, None, shard=0, curves={},
                       extra={}).scores["aopc"].cpu().numpy().astype(float)


def ours(model, images, targets, methods, metric, args) -> dict[str, float]:
    """xaibench's meta-evaluation of ``metric``: {part: value}."""
    q = np.stack([scores(metric, model, images, targets, m.attribute(model, images, targets))
                  for m in methods.values()])
    base = predictions(model, images, len(images)).numpy()
    parts = {t: [] for t in mc.TESTS}
    for test in mc.TESTS:
        for it in range(args.iterations):
            q_hat, preds = np.full((args.perturbations, *q.shape), np.nan), []
            for k in range(args.perturbations):  # as the run: only the images the test keeps are scored
                draw = derive_seed(args.seed, "meta", test, it, k)
                model_k, images_k = perturbed(test, NOISE[test], draw, model, images)
                preds.append(predictions(model_k, images_k, len(images)).numpy())
                keep = torch.from_numpy(mc.kept(base, preds[-1][None], test)[0]).to(images.device)
                if not keep.any():
                    continue
                for i, m in enumerate(methods.values()):
                    maps = m.attribute(model_k, images_k, targets)
                    q_hat[k, i, keep.cpu().numpy()] = scores(metric, model_k, images_k[keep], targets[keep],
                                                       maps[keep])
            keep = mc.kept(base, np.stack(preds), test)
            parts[test].append(mc.test_parts(q, q_hat, keep, test=test, higher=True))
    return mc.meta_consistency(parts)


class RegionAOPC:
    """A MetaQuantus estimator: Quantus's RegionPerturbation curves as AOPC per image."""

    abs, normalise, normalise_func, normalise_func_kwargs = False, False, None, {}

    def __init__(self, patch_size: int, steps: int) -> None:
        import quantus

        self.steps = steps
        self.metric = quantus.RegionPerturbation(patch_size=patch_size, order="morf",
                                                 regions_evaluation=steps, perturb_baseline=0.0, abs=False,
                                                 normalise=False, **QUIET)

    def __call__(self, model, x_batch, y_batch, a_batch, s_batch, **kwargs) -> list[float]:
        drops = np.asarray(self.metric(model=model, x_batch=x_batch, y_batch=y_batch, a_batch=a_batch,
                                       channel_first=True, softmax=True, device=DEVICE.type,
                                       batch_size=len(x_batch)))
        return list(drops.sum(1) / (self.steps + 1))


class EngineAOPC(RegionAOPC):
    """A MetaQuantus estimator that is xaibench's AOPC (the loop compared alone, same scores)."""

    def __init__(self, metric) -> None:
        self.metric = metric

    def __call__(self, model, x_batch, y_batch, a_batch, s_batch, **kwargs) -> list[float]:
        maps = torch.as_tensor(np.asarray(a_batch)).float().reshape(len(x_batch), *x_batch.shape[2:])
        x, y = torch.as_tensor(x_batch).to(DEVICE), torch.as_tensor(y_batch).long().to(DEVICE)
        maps = maps.to(DEVICE)
        return list(scores(self.metric, model, x, y, maps))


class SeededWrapper:
    """Stands in for Quantus's model wrapper inside MetaQuantus's model test: ``sample`` returns
    xaibench's perturbed model for the next seed (the order MetaQuantus's loop draws them in)."""

    seeds: deque = deque()

    def __init__(self, model, **kwargs) -> None:
        self.model = model

    def sample(self, mean: float, std: float, noise_type: str) -> nn.Module:
        return noisy_model(self.model, std, self.seeds.popleft())

    def predict(self, x: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return self.model(torch.as_tensor(x).to(DEVICE)).cpu().numpy()

    def get_model(self) -> nn.Module:
        return self.model


def theirs(model, images, methods, metric, args) -> dict[str, dict]:
    """MetaQuantus's MetaEvaluation on the same model, images, methods and model noise."""
    import metaquantus
    from metaquantus.perturbation_tests import mpt

    def explain(model, inputs, targets, method, **kwargs):
        x, y = torch.as_tensor(inputs).to(DEVICE), torch.as_tensor(targets).long().to(DEVICE)
        return methods[method].attribute(model, x, y).detach().cpu().numpy()

    suite = {"Model Resilience Test": metaquantus.ModelPerturbationTest(
                 type="Resilience", noise_type="multiplicative", mean=1.0, std=NOISE["model_resilience"]),
             "Model Adversary Test": metaquantus.ModelPerturbationTest(
                 type="Adversary", noise_type="multiplicative", mean=1.0, std=NOISE["model_adversary"]),
             "Input Resilience Test": metaquantus.InputPerturbationTest(
                 type="Resilience", noise=NOISE["input_resilience"]),
             "Input Adversary Test": metaquantus.InputPerturbationTest(
                 type="Adversary", noise=NOISE["input_adversary"])}
    SeededWrapper.seeds = deque(derive_seed(args.seed, "meta", t, it, k) for t in mc.TESTS[:2]
                                for it in range(args.iterations) for k in range(args.perturbations))
    original, mpt.get_wrapped_model = mpt.get_wrapped_model, SeededWrapper
    np.random.seed(args.seed)
    try:
        ev = metaquantus.MetaEvaluation(test_suite=suite, xai_methods={m: {} for m in methods},
                                        iterations=args.iterations, nr_perturbations=args.perturbations,
                                        explain_func=explain, write_to_file=False)
        estimator = (RegionAOPC(args.patch_size, args.steps) if args.estimator == "quantus"
                     else EngineAOPC(metric))
        ev(estimator=estimator, model=model, x_batch=images.cpu().numpy(),
           y_batch=predictions(model, images, len(images)).numpy(), channel_first=True, softmax=True,
           device=DEVICE.type, score_direction=None)
    finally:
        mpt.get_wrapped_model = original
    return ev.results_meta_consistency_scores


def warm_up(model, images, targets, methods, metric) -> None:
    """Import what either side imports on first use (captum, zennit, Quantus, MetaQuantus) and run
    every method and the metric once on two images, so that neither side's time counts imports
    (the side timed first would otherwise pay them: about 5 s here)."""
    import metaquantus  # noqa: F401
    import quantus  # noqa: F401

    x, y = images[:2], targets[:2]
    for method in methods.values():
        scores(metric, model, x, y, method.attribute(model, x, y))


def timed(fn, repeat: int):
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def report(mine: dict, other: dict, t_ours: float, t_theirs: float, args) -> None:
    where = torch.cuda.get_device_name(0) if DEVICE.type == "cuda" else cpu_model()
    print(f"{where}, {args.model}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {args.images} images of {args.size} px, "
          f"{len(args.methods)} methods, K = {args.perturbations}, iterations = {args.iterations}, "
          f"model adversary sigma {NOISE['model_adversary']}, MetaQuantus's estimator: {args.estimator}, "
          f"channels_last {args.channels_last}")
    names = {"iac_nr": "IAC_{NR} mean", "iac_ar": "IAC_{AR} mean", "iec_nr": "IEC_{NR} mean",
             "iec_ar": "IEC_{AR} mean"}
    print(f"{'part':<16}{'xaibench':>10}{'MetaQuantus':>13}{'abs diff':>10}")
    for kind, label in (("model", "Model"), ("input", "Input")):
        res = other[label]["consistency_results"]
        for part, name in names.items():
            a, b = mine[f"{kind}_{part}"], float(res[name])
            print(f"{kind + '_' + part:<16}{a:>10.4f}{b:>13.4f}{abs(a - b):>10.2e}")
        print(f"{kind + '_mc':<16}{mine[kind + '_mc']:>10.4f}{float(other[label]['MC_mean']):>13.4f}")
    print(f"seconds: xaibench {t_ours:.2f}, MetaQuantus {t_theirs:.2f}, ratio {t_theirs / t_ours:.1f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--methods", nargs="+", default=["saliency", "input_x_gradient", "gradcam", "random",
                                                    "sobel", "center"])
    p.add_argument("--perturbations", type=int, default=2)
    p.add_argument("--iterations", type=int, default=1)
    p.add_argument("--patch-size", type=int, default=4)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--adversary-sigma", type=float, default=NOISE["model_adversary"])
    p.add_argument("--estimator", choices=["quantus", "xaibench"], default="quantus",
                   help="MetaQuantus's estimator: Quantus's RegionPerturbation as AOPC, or xaibench's AOPC")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--model", choices=["cnn", "resnet50"], default="cnn",
                   help="the random 3-layer CNN (10 classes) or torchvision's ResNet-50 (random weights)")
    p.add_argument("--channels-last", action="store_true",
                   help="AOPC's engine feeds channels-last inputs (its channels_last setting)")
    args = p.parse_args()
    NOISE["model_adversary"] = args.adversary_sigma
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    global DEVICE
    DEVICE = torch.device(args.device)
    model = (cnn(args.seed) if args.model == "cnn" else resnet50(args.seed)).to(DEVICE)
    gen = torch.Generator().manual_seed(args.seed)
    images = torch.rand(args.images, 3, args.size, args.size, generator=gen).to(DEVICE)
    targets = predictions(model, images, len(images)).to(DEVICE)
    methods = {m: build(METHODS.get(m), {}) for m in args.methods}
    metric = build(METRICS.get("aopc"), {"patch_size": args.patch_size, "steps": args.steps,
                                          "substrate": "black", "lerf": False,
                                          "channels_last": args.channels_last})
    warm_up(model, images, targets, methods, metric)
    t_ours, mine = timed(lambda: ours(model, images, targets, methods, metric, args), args.repeat)
    t_theirs, other = timed(lambda: theirs(model, images, methods, metric, args), args.repeat)
    report(mine, other, t_ours, t_theirs, args)


if __name__ == "__main__":
    main()
