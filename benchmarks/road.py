"""ROAD's noisy linear imputation: the batched torch solve against the per-image reference, on the
same images and masks, in one run.

    nice -n 15 .venv/bin/python benchmarks/road.py                 # CPU, 64 and 224 px
    .venv/bin/python benchmarks/road.py --device cuda              # the batched solve on the GPU

For each image size (--sizes) and removal map (--maps), --images random images [0, 1] and one
removal mask each, the given --percentage (default 50%) of the pixels removed most relevant first
(MoRF, :func:`xaibench.metrics.road.removal_masks`) from:

- "random": a uniform random attribution map (scattered removed pixels: ROAD on a noisy map);
- "smooth": a Gaussian blob at a random place (one contiguous removed region, the worst case of
  the iterative solve: ROAD on a smooth map such as Grad-CAM's).

Contenders, noise 0 so that the numbers can be compared:

- reference: pytorch-grad-cam's ``NoisyLinearImputer`` (the authors' road_evaluation code: a SciPy
  sparse system per image, set up and solved with ``spsolve`` on the CPU), image by image;
- batched: :func:`xaibench.metrics.road.noisy_linear_impute` on all images at once, on --device.

Times are the fastest of --repeat runs, interleaved; per image = run time / images. On a shared
machine wall-clock time mostly measures the other processes, so the CPU time of this process
(``time.process_time``, CPU runs) is printed as well (run with --threads 1 to compare one core
with one core: SciPy's solve is single-threaded). "max |diff|" is over every pixel of every image.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch
from pytorch_grad_cam.metrics.road import NoisyLinearImputer

from xaibench.metrics.road import noisy_linear_impute, removal_masks


def attribution_maps(kind: str, n: int, size: int, gen: torch.Generator) -> torch.Tensor:
    if kind == "random":
        return torch.rand(n, size, size, generator=gen)
    centre = torch.rand(n, 2, generator=gen) * size * 0.6 + size * 0.2
    coords = torch.arange(size, dtype=torch.float32)
    dy = (coords.view(1, -1, 1) - centre[:, 0].view(-1, 1, 1)) ** 2
    dx = (coords.view(1, 1, -1) - centre[:, 1].view(-1, 1, 1)) ** 2
    return torch.exp(-(dy + dx) / (2 * (size / 4) ** 2))


def timed(fn, device: torch.device) -> tuple[float, float, torch.Tensor]:
    """(wall seconds, CPU seconds of this process, result) of one call."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t, time.process_time() - c, out


def run_case(size: int, kind: str, args: argparse.Namespace, device: torch.device) -> str:
    """One table row: both contenders on the same images and masks."""
    reference = NoisyLinearImputer(noise=0.0)
    gen = torch.Generator().manual_seed(size)
    images = torch.rand(args.images, 3, size, size, generator=gen)
    removed = removal_masks(attribution_maps(kind, args.images, size, gen), (args.percentage,))[0]
    x, m = images.to(device), removed.to(device)
    noisy_linear_impute(x[:2], m[:2])  # warm-up (kernels, allocator)
    contenders = {
        "reference": lambda: torch.stack([reference(img, (~rem).float())
                                          for img, rem in zip(images, removed)]),
        "batched": lambda: noisy_linear_impute(x, m),
    }
    best = {key: (float("inf"), float("inf")) for key in contenders}
    results = {}
    for r in range(args.repeat):  # interleaved, in alternating order: load from others hits both alike
        for key, fn in (list(contenders.items())[::-1] if r % 2 else contenders.items()):
            wall, cpu, results[key] = timed(fn, device)
            best[key] = (min(best[key][0], wall), min(best[key][1], cpu))
    diff = float((results["batched"].cpu() - results["reference"]).abs().max())
    (ref_wall, ref_cpu), (bat_wall, bat_cpu) = best["reference"], best["batched"]
    n = args.images
    line = (f"| {size} | {kind} | {n} | {ref_wall / n:.4f} | {bat_wall / n:.4f} | "
            f"{ref_wall / bat_wall:.1f}x | {diff:.1e} |")
    if device.type == "cpu":
        line += f" {ref_cpu / n:.4f} | {bat_cpu / n:.4f} | {ref_cpu / bat_cpu:.1f}x |"
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--device", default="cpu", help="device of the batched solve (the reference "
                                                        "always runs on the CPU)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 224])
    parser.add_argument("--maps", nargs="+", choices=["random", "smooth"], default=["random", "smooth"])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--percentage", type=float, default=0.5)
    parser.add_argument("--repeat", type=int, default=2, help="report the fastest of this many runs")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                  f"{torch.get_num_threads()} torch threads, load average {os.getloadavg()[0]:.1f}")
    print(f"noisy linear imputation, noise 0, {args.percentage:.0%} of the pixels removed (MoRF), "
          f"{args.images} images per size; batched on {device} ({where}), reference (pytorch-grad-cam "
          f"NoisyLinearImputer, SciPy spsolve) on the CPU; torch {torch.__version__}; "
          f"best of {args.repeat}\n")
    head = "| size | map | images | reference s/image | batched s/image | speed-up | max abs diff |"
    rule = "| --- | --- | --- | --- | --- | --- | --- |"
    if device.type == "cpu":
        head += " reference CPU-s/image | batched CPU-s/image | speed-up (CPU time) |"
        rule += " --- | --- | --- |"
    print(head)
    print(rule, flush=True)
    for size in args.sizes:
        for kind in args.maps:
            print(run_case(size, kind, args, device), flush=True)


if __name__ == "__main__":
    main()
