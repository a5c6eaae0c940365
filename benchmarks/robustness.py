"""The re-explaining metrics against Quantus on the same settings and the same noise: equal
numbers, and the speed of batching.

    nice -n 15 .venv/bin/python benchmarks/robustness.py                  # CPU, small settings
    .venv/bin/python benchmarks/robustness.py --device cuda --images 64 --size 64 --samples 50

A plain CNN (4 conv layers and a linear layer, 10 classes, random weights: every layer is one
randomisation unit, so Quantus' layer-by-layer randomisation and xaibench's units coincide),
--images random images of --size px, explained by saliency (the gradient, max |.| over channels).
For each metric the same draws go to both sides (Quantus' ``perturb_func`` replays them; smooth
MPRT's ``np.random.randn`` and ``quantus.explain`` are replaced for the call):

- max_sensitivity: --samples copies in U(-0.02, 0.02) (Quantus' MaxSensitivity);
- local_lipschitz: --samples copies with N(0, 0.1^2) noise, per-image max normalisation
  (Quantus' LocalLipschitzEstimate with ``normalise_axes`` per image);
- relative_input_stability: --samples copies in U(-0.02, 0.02) (Quantus' RelativeInputStability);
- smooth_mprt: --smooth-samples maps per image, each layer above the input layer randomised
  independently (Quantus' SmoothMPRT, ``layer_order="independent"``, which also randomises the
  input layer: one stage more for Quantus, about 1/5 of its time here).

xaibench explains every copy of every image in calls of --batch-size images; Quantus explains the
batch once per sample (NumPy in between). Times are the fastest of --repeat runs, per metric;
"max abs diff" and "max rel diff" are the largest |ours - Quantus| and |ours - Quantus| / |Quantus|
over the images (and the MPRT stages; a correlation near 0 inflates the relative one).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import numpy as np
import torch
from torch import nn

from xaibench.metrics.local_lipschitz import local_lipschitz
from xaibench.metrics.max_sensitivity import sensitivity
from xaibench.metrics.relative_input_stability import relative_input_stability
from xaibench.metrics.smooth_mprt import noise_scale, smooth_cascade
from xaibench.params import build
from xaibench.registry import METHODS


def cnn(seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1),
                        nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(32, 10))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return net.eval()


def best(fn, repeat: int, device: torch.device) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--samples", type=int, default=20, help="noisy copies per image (robustness)")
    parser.add_argument("--smooth-samples", type=int, default=10, help="maps per image (smooth_mprt)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--metrics",
                        default="max_sensitivity,local_lipschitz,relative_input_stability,smooth_mprt")
    args = parser.parse_args()
    import quantus

    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = cnn().to(device)
    gen = torch.Generator().manual_seed(0)
    b, n, size = args.images, args.samples, args.size
    images = torch.rand(b, 3, size, size, generator=gen)
    targets = torch.randint(0, 10, (b,), generator=gen)
    method = build(METHODS.get("saliency"), {})
    x, y = images.to(device), targets.to(device)
    print(f"{platform.node()} ({os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} "
          f"threads), device {device}; {b} images of {size} px, saliency on a 5-layer CNN")

    def explain_np(model, inputs, targets, **kwargs):
        inputs, targets = torch.as_tensor(inputs, device=device), torch.as_tensor(targets, device=device)
        maps = method.attribute(model, inputs, targets)
        return maps.detach().cpu().numpy()[:, None]

    def replay(noise):
        steps = iter(range(noise.shape[1]))

        def perturb(arr, indices, **kwargs):
            return arr + noise[:, next(steps)].reshape(len(arr), -1).numpy()
        return perturb

    def quantus_call(metric):
        return np.asarray(metric(model=model, x_batch=images.numpy(), y_batch=targets.numpy(),
                                 a_batch=explain_np(model, images.numpy(), targets.numpy()),
                                 explain_func=explain_np, device=str(device)), dtype=np.float64)

    uni = (torch.rand(b, n, 3, size, size, generator=gen) * 2 - 1) * 0.02
    gauss = 0.1 * torch.randn(b, n, 3, size, size, generator=gen)
    cases = {
        "max_sensitivity": (
            lambda: sensitivity(model, method, x, y, uni.to(device), batch_size=args.batch_size,
                                seed=0).amax(1),
            lambda: quantus_call(quantus.MaxSensitivity(nr_samples=n, perturb_func=replay(uni)))),
        "local_lipschitz": (
            lambda: local_lipschitz(model, method, x, y, gauss.to(device), normalise=True,
                                    batch_size=args.batch_size, seed=0),
            lambda: quantus_call(quantus.LocalLipschitzEstimate(
                nr_samples=n, perturb_func=replay(gauss),
                normalise_func_kwargs={"normalise_axes": (1, 2, 3)}))),
        "relative_input_stability": (
            lambda: relative_input_stability(model, method, x, y, uni.to(device), eps_min=1e-6,
                                             batch_size=args.batch_size, seed=0)[0].amax(1),
            lambda: quantus_call(quantus.RelativeInputStability(nr_samples=n, perturb_func=replay(uni)))),
    }
    k = args.smooth_samples - 1
    z = torch.randn(b, k, 3, size, size, generator=gen)

    def ours_smooth():
        scaled = noise_scale(x, 0.1)[:, None, None, None, None] * z.to(device)
        return smooth_cascade(model, method, x, y, scaled, seed=7, stages=None, order="independent",
                              batch_size=args.batch_size)[:, 1:].T

    def quantus_smooth():
        calls = iter(range(10 ** 9))
        randn, explain = np.random.randn, quantus.explain
        np.random.randn = lambda *shape: z[:, next(calls) % k].numpy().astype(np.float64)
        quantus.explain = lambda model, inputs, targets, **kw: explain_np(model, inputs.astype(np.float32),
                                                                          targets)
        try:
            scores = quantus.SmoothMPRT(layer_order="independent", seed=7, nr_samples=k + 1)(
                model=model, x_batch=images.numpy(), y_batch=targets.numpy(), a_batch=None,
                explain_func=explain_np, device=str(device))
        finally:
            np.random.randn, quantus.explain = randn, explain
        return np.array([v for key, v in scores.items() if key not in ("original", "0")])

    cases["smooth_mprt"] = (ours_smooth, quantus_smooth)
    method.attribute(model, x, y)  # warm up (imports, allocator) before timing
    print(f"{'metric':26s} {'xaibench s':>10s} {'Quantus s':>10s} {'speed-up':>9s} {'max abs diff':>13s} "
          f"{'max rel diff':>13s}")
    for name in args.metrics.split(","):
        ours_fn, theirs_fn = cases[name]
        t_ours, ours = best(ours_fn, args.repeat, device)
        t_theirs, theirs = best(theirs_fn, args.repeat, device)
        ours = ours.double().cpu().numpy()
        gap = np.abs(ours - theirs)
        rel = np.nanmax(gap / np.maximum(np.abs(theirs), 1e-12))
        print(f"{name:26s} {t_ours:10.3f} {t_theirs:10.3f} {t_theirs / t_ours:8.1f}x {np.nanmax(gap):13.2e} "
              f"{rel:13.2e}", flush=True)


if __name__ == "__main__":
    main()
