"""Seconds per image of each registered method on a ResNet18 (stem max-pool dropped, 2 classes)
at 64 x 64, the default benchmark's model and image size. Untrained weights: the cost of these
methods does not depend on the values of the weights.

    .venv/bin/python benchmarks/method_costs.py                 # every method, markdown table
    .venv/bin/python benchmarks/method_costs.py gradcam occlusion --images 50

Costly methods are timed on fewer images (their per-image cost does not depend on the batch:
they batch internally), RISE with fewer masks and expected gradients with fewer samples (their
cost is linear in the number of masks, of samples);
the table says what was measured and the per-image figure for the default settings.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from xaibench.methods.layers import model_family
from xaibench.models.configs import ModelConfig, build_model
from xaibench.params import build
from xaibench.registry import METHODS

# method -> (images timed, parameter overrides for the timing, factor to the default settings)
PLAN = {
    "integrated_gradients": (10, {}, 1.0),
    "smoothgrad": (10, {}, 1.0),
    "occlusion": (10, {}, 1.0),
    "rise": (4, {"n_masks": 400}, 10.0),  # default 4000 masks
    "expected_gradients": (4, {"n_samples": 20}, 10.0),  # default 200 samples
}


def time_method(name: str, model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                n_images: int, repeat: int) -> tuple[float, int, dict, float]:
    n, params, factor = PLAN.get(name, (n_images, {}, 1.0))
    n = min(n, n_images)
    method = build(METHODS.get(name), params)
    if method.reference_split is not None:  # a run hands it the training images: 64 random ones here
        method.use_references(torch.rand(64, *images.shape[1:], generator=torch.Generator().manual_seed(1)))
    method.attribute(model, images[:1], labels[:1])  # warm-up: first-call set-up off the clock
    seconds = []
    for _ in range(repeat):  # the fastest run: the least disturbed by other processes
        t = time.perf_counter()
        method.attribute(model, images[:n], labels[:n])
        seconds.append(time.perf_counter() - t)
    return min(seconds) / n * factor, n, params, factor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("methods", nargs="*", help="default: every registered method")
    parser.add_argument("--images", type=int, default=50, help="batch size for the cheap methods")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=1, help="report the fastest of this many runs")
    args = parser.parse_args()
    torch.manual_seed(0)
    device = torch.device(args.device)
    size = (args.size, args.size)
    model = build_model(ModelConfig(id="resnet18", arch="resnet18"), 2, size).to(device).eval()
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(args.images, 3, args.size, args.size, generator=gen).to(device)
    labels = torch.randint(0, 2, (args.images,), generator=gen).to(device)
    cpu = platform.processor() or platform.machine()
    print(f"ResNet18 (no stem max-pool), {args.size}x{args.size}, {device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {cpu}, load average {os.getloadavg()[0]:.1f}\n")
    print("| method | s / image (defaults) | passes / image | timed on |")
    print("| --- | --- | --- | --- |")
    for name in args.methods or METHODS.names():
        method = build(METHODS.get(name), {})
        if not (method.supports("resnet18") and method.supports_family(model_family(model))):
            print(f"| {name} | - | - | does not explain a ResNet18: needs {method.requirement} |", flush=True)
            continue
        per_image, n, params, factor = time_method(name, model, images, labels, args.images, args.repeat)
        passes = method.passes_per_image
        how = f"{n} images" + (f", {params}, x{factor:g}" if params else "")
        print(f"| {name} | {per_image:.3f} | {passes if passes is not None else '-'} | {how} |", flush=True)


if __name__ == "__main__":
    main()
