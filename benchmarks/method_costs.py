"""Seconds per image of each registered method on a ResNet18 (stem max-pool dropped, 2 classes)
at 64 x 64, or on another torchvision ResNet (--arch). Untrained weights: the cost of these
methods does not depend on the values of the weights.

    .venv/bin/python benchmarks/method_costs.py                 # every method, markdown table
    .venv/bin/python benchmarks/method_costs.py gradcam occlusion --images 50
    .venv/bin/python benchmarks/method_costs.py --device cuda --arch resnet50 --size 224 --images 64

On CUDA each method also runs once on the whole batch of --images under the run's memory budget
(--memory, as ``[run] memory``: "auto" is half the free device memory when the script starts), and
the table gives its peak GPU memory above the model and the images (``torch.cuda.max_memory_allocated``)
against that budget. The costly methods run that batch with the reduced settings of ``PEAK``: their
chunks, and so their peak, are sized by the budget, not by the number of windows, steps, masks or
samples.

Costly methods are timed on fewer images (their per-image cost does not depend on the batch:
they batch internally), RISE with fewer masks and expected gradients with fewer samples (their
cost is linear in the number of masks, of samples);
the table says what was measured and the per-image figure for the default settings.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from xaibench.budget import limited, resolve
from xaibench.methods.layers import model_family
from xaibench.models.configs import ModelConfig, build_model
from xaibench.params import build
from xaibench.registry import METHODS
from xaibench.run.writer import cpu_model

# method -> (images timed, parameter overrides for the timing, factor to the default settings)
PLAN = {
    "integrated_gradients": (10, {}, 1.0),
    "smoothgrad": (10, {}, 1.0),
    "occlusion": (10, {}, 1.0),
    "rise": (4, {"n_masks": 400}, 10.0),  # default 4000 masks
    "expected_gradients": (4, {"n_samples": 20}, 10.0),  # default 200 samples
    "fgvis": (8, {}, 1.0),
}
# method -> parameter overrides for the peak-memory call on the whole batch: fewer windows, steps,
# masks or samples, the same chunks (each chunk is sized by the budget, not by their number)
PEAK = {"occlusion": {"stride": 16}, "fgvis": {"max_steps": 20}, "rise": {"n_masks": 400},
        "expected_gradients": {"n_samples": 20}}


def method_for(name: str, params: dict, images: torch.Tensor):
    """The method with ``params``; one that draws baselines from the training images (a run hands
    them over) gets 64 random images of the same size here."""
    method = build(METHODS.get(name), params)
    if method.reference_split is not None:
        method.use_references(torch.rand(64, *images.shape[1:], generator=torch.Generator().manual_seed(1)))
    return method


def time_method(name: str, model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                n_images: int, repeat: int) -> tuple[float, int, dict, float]:
    n, params, factor = PLAN.get(name, (n_images, {}, 1.0))
    n = min(n, n_images)
    method = method_for(name, params, images)
    method.attribute(model, images[:1], labels[:1])  # warm-up: first-call set-up off the clock
    seconds = []
    for _ in range(repeat):  # the fastest run: the least disturbed by other processes
        t = time.perf_counter()
        method.attribute(model, images[:n], labels[:n])
        seconds.append(time.perf_counter() - t)
    return min(seconds) / n * factor, n, params, factor


def peak_mib(name: str, model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Peak CUDA memory (MiB) above what is allocated before the call, of one call on the batch."""
    method = method_for(name, PEAK.get(name, {}), images)
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    method.attribute(model, images, labels)
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - before) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("methods", nargs="*", help="default: every registered method")
    parser.add_argument("--images", type=int, default=50, help="batch size for the cheap methods")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=1, help="report the fastest of this many runs")
    parser.add_argument("--arch", default="resnet18", help="a ResNet of xaibench's model configs")
    parser.add_argument("--memory", default="auto", help="the memory budget on CUDA, as [run] memory")
    args = parser.parse_args()
    torch.manual_seed(0)
    device = torch.device(args.device)
    size = (args.size, args.size)
    model = build_model(ModelConfig(id=args.arch, arch=args.arch), 2, size).to(device).eval()
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(args.images, 3, args.size, args.size, generator=gen).to(device)
    labels = torch.randint(0, 2, (args.images,), generator=gen).to(device)
    cpu = cpu_model()
    cuda = device.type == "cuda"
    budget = resolve(args.memory, device) if cuda else None
    print(f"{args.arch} (no stem max-pool), {args.size}x{args.size}, {device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {cpu}, load average {os.getloadavg()[0]:.1f}"
          + (f", memory budget {budget.nbytes / 2**20:.0f} MiB ({args.memory})" if cuda else "") + "\n")
    extra = f" peak MiB, batch of {args.images} | within budget |" if cuda else ""
    print("| method | s / image (defaults) | passes / image | timed on |" + extra)
    print("| --- | --- | --- | --- |" + (" --- | --- |" if cuda else ""))
    for name in args.methods or METHODS.names():
        method = build(METHODS.get(name), {})
        if not (method.supports(args.arch) and method.supports_family(model_family(model))):
            print(f"| {name} | - | - | does not explain a {args.arch}: needs {method.requirement} |"
                  + (" - | - |" if cuda else ""), flush=True)
            continue
        with limited(budget):
            per_image, n, params, factor = time_method(name, model, images, labels, args.images, args.repeat)
            peak = peak_mib(name, model, images, labels) if cuda else None
        passes = method.passes_per_image
        how = f"{n} images" + (f", {params}, x{factor:g}" if params else "")
        row = f"| {name} | {per_image:.3f} | {passes if passes is not None else '-'} | {how} |"
        if peak is not None:
            row += f" {peak:.0f} | {'yes' if peak * 2**20 <= budget.nbytes else 'NO'} |"
        print(row, flush=True)


if __name__ == "__main__":
    main()
