"""Throughput of the perturbation engine against the model's plain forward pass, Quantus'
RegionPerturbation and a naive per-image, per-step loop, on the same model, inputs, attributions
and settings, in one run.

    nice -n 15 .venv/bin/python benchmarks/engine.py                 # the CPU case (+ CUDA if present)
    .venv/bin/python benchmarks/engine.py --case cuda                # ResNet50, 224 x 224, on the GPU

What is timed (the fastest of --repeat runs, interleaved in alternating order so that load from
other processes hits every contender alike; untrained weights, the cost does not depend on their
values). On CPU the table also gives throughput per CPU-second of this process (the fastest run's
``time.process_time``): on a shared, busy machine the wall clock mostly measures the other
processes, the CPU time what each contender costs (run with ``--threads 1`` there, or idle-spinning
intra-op threads are counted too):

- forward: ``model(x)`` on batches of --batch images under inference mode, steps + 1 passes over
  the images (the engine's number of passes, so both run equally long): the ceiling.
- engine: ``perturbation_curves`` (MoRF, black substrate, softmax of the label) for all images,
  chunk_size = --batch.
- quantus: ``quantus.RegionPerturbation`` with the same patch size, steps (regions_evaluation),
  black substrate (perturb_baseline 0.0), no attribution preprocessing, batch_size = --batch.
- naive: one image and one step at a time (paste a patch, run the model on one image), on
  --naive-images images (its cost per image does not depend on how many).

Fair ratio: every contender runs steps + 1 forward passes per image (the clean image and L
perturbed ones), so the engine is compared with the plain forward pass per forward pass: engine
image-steps per second = images per second x (steps + 1), divided by the forward pass's images per
second at the same batch size. engine/quantus compares whole curves per second. The script checks
that the engine's fp32 curves equal Quantus' (max |difference| printed).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable

import numpy as np
import torch

from xaibench.metrics.perturbation import patch_order, perturbation_curves
from xaibench.models.configs import ModelConfig, build_model

CASES = {  # name -> arch, image size, images, batch (= chunk), patch size, steps, device
    "cpu": ("resnet18", 64, 32, 32, 8, 16, "cpu"),
    "cuda": ("resnet50", 224, 256, 128, 16, 100, "cuda"),
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> tuple[float, float]:
    """(wall-clock seconds, CPU seconds of this process) of one call."""
    sync(device)
    t, c = time.perf_counter(), time.process_time()
    fn()
    sync(device)
    return time.perf_counter() - t, time.process_time() - c


def naive_curves(model: torch.nn.Module, images: torch.Tensor, attributions: torch.Tensor,
                 labels: torch.Tensor, patch: int, steps: int) -> torch.Tensor:
    """One image, one step, one forward pass at a time (patch sizes that divide the image)."""
    order = patch_order(attributions, patch)
    cols = images.shape[3] // patch
    curves = []
    with torch.inference_mode():
        for i in range(images.shape[0]):
            x = images[i:i + 1].clone()
            curve = [model(x).softmax(1)[0, labels[i]]]
            for k in range(steps):
                r, c = divmod(int(order[i, k]), cols)
                x[..., r * patch:(r + 1) * patch, c * patch:(c + 1) * patch] = 0.0
                curve.append(model(x).softmax(1)[0, labels[i]])
            curves.append(torch.stack(curve))
    return torch.stack(curves)


def run_case(name: str, repeat: int, naive_images: int, with_quantus: bool, fast_options: bool) -> None:
    arch, size, n, batch, patch, steps, dev = CASES[name]
    device = torch.device(dev)
    torch.manual_seed(0)  # torchvision initialises weights from the global RNG
    model = build_model(ModelConfig(id=arch, arch=arch), 2, (size, size)).to(device).eval()
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(n, 3, size, size, generator=gen).to(device)
    attributions = torch.randn(n, size, size, generator=gen).to(device)
    labels = torch.randint(0, 2, (n,), generator=gen).to(device)
    naive_n = min(naive_images, n)

    def forward() -> None:  # as many passes as the engine makes: steps + 1 per image
        with torch.inference_mode():
            for _ in range(steps + 1):
                for start in range(0, n, batch):
                    model(images[start:start + batch])

    def engine(**options: object) -> torch.Tensor:
        return perturbation_curves(model, images, attributions, labels, patch_size=patch, steps=steps,
                                   chunk_size=batch, **options)

    contenders: dict[str, Callable[[], object]] = {"forward": forward, "engine": engine}
    if fast_options and device.type == "cuda":
        contenders["engine bf16 + channels_last"] = lambda: engine(autocast="bf16", channels_last=True)
    if with_quantus:
        import quantus

        metric = quantus.RegionPerturbation(patch_size=patch, order="morf", regions_evaluation=steps,
                                            perturb_baseline=0.0, abs=False, normalise=False,
                                            disable_warnings=True, display_progressbar=False)
        x_np, a_np, y_np = images.cpu().numpy(), attributions[:, None].cpu().numpy(), labels.cpu().numpy()

        def run_quantus() -> np.ndarray:
            return np.asarray(metric(model=model, x_batch=x_np, y_batch=y_np, a_batch=a_np,
                                     channel_first=True, softmax=True, device=str(device),
                                     batch_size=batch))

        contenders["quantus"] = run_quantus
    contenders["naive loop"] = lambda: naive_curves(model, images[:naive_n], attributions[:naive_n],
                                                    labels[:naive_n], patch, steps)

    curves = engine()
    diff = float("nan")
    if with_quantus:
        drops = contenders["quantus"]()
        diff = float(np.abs((curves[:, :1] - curves[:, 1:]).cpu().numpy() - drops).max())
    naive_diff = float((naive_curves(model, images[:2], attributions[:2], labels[:2], patch, steps)
                        - curves[:2]).abs().max())
    wall = {k: float("inf") for k in contenders}
    cpu = dict(wall)
    for r in range(repeat):  # interleaved, in alternating order: load from others hits all alike
        for key, fn in (list(contenders.items())[::-1] if r % 2 else contenders.items()):
            w, c = timed(fn, device)
            wall[key], cpu[key] = min(wall[key], w), min(cpu[key], c)

    images_timed = {"naive loop": naive_n, "forward": n * (steps + 1)}
    per_s = {k: images_timed.get(k, n) / s for k, s in wall.items()}
    per_cpu_s = {k: images_timed.get(k, n) / s for k, s in cpu.items()}
    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                  f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}")
    print(f"\n{name}: {arch} ({'no stem max-pool, ' if size < 112 else ''}2 classes), {size}x{size}, "
          f"{n} images, batch/chunk {batch}, {patch}-px patches, {steps} steps (= {steps + 1} forward "
          f"passes per image), black substrate, fp32; {device} ({where}); torch {torch.__version__}; "
          f"best of {repeat}")
    print(f"max |engine - quantus| over the curves: {diff:.2e}; max |engine - naive|: {naive_diff:.2e}\n")
    cpu_column = device.type == "cpu"
    head = "| contender | images / s | forward passes (image-steps) / s |"
    print(head + (" images / CPU-s | passes / CPU-s |" if cpu_column else ""))
    print("| --- | --- | --- |" + (" --- | --- |" if cpu_column else ""))
    for key, v in per_s.items():
        per_pass = 1 if key == "forward" else steps + 1
        label = {"forward": "plain forward (1 pass per image)",
                 "naive loop": f"naive loop ({naive_n} images)"}.get(key, key)
        line = f"| {label} | {v:.1f} | {v * per_pass:.0f} |"
        if cpu_column:
            line += f" {per_cpu_s[key]:.1f} | {per_cpu_s[key] * per_pass:.0f} |"
        print(line)
    for what, rates in (("wall clock", per_s), ("CPU time", per_cpu_s))[:2 if cpu_column else 1]:
        per_pass = rates["engine"] * (steps + 1) / rates["forward"]
        ratios = [f"engine / forward, per forward pass: {per_pass:.2f}"]
        if with_quantus:
            ratios.append(f"engine / quantus: {rates['engine'] / rates['quantus']:.2f}")
        ratios.append(f"engine / naive loop: {rates['engine'] / rates['naive loop']:.2f}")
        print(f"\n{what}: " + "; ".join(ratios))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--case", choices=[*CASES, "all"], default="all",
                        help="default: the CPU case, and the CUDA case when a GPU is present")
    parser.add_argument("--repeat", type=int, default=3, help="report the fastest of this many runs")
    parser.add_argument("--naive-images", type=int, default=4)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--no-quantus", action="store_true")
    parser.add_argument("--no-fast-options", action="store_true",
                        help="skip the bf16 + channels_last engine row on CUDA")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cases = [args.case] if args.case != "all" else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for case in cases:
        run_case(case, args.repeat, args.naive_images, not args.no_quantus, not args.no_fast_options)


if __name__ == "__main__":
    main()
