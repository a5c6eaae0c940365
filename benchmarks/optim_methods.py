"""Seconds per image of the optimisation-based methods (fgvis, inverse), batched against one image
at a time, on the same inputs and in the same run (so the ratios compare like with like).

    .venv/bin/python benchmarks/optim_methods.py                       # CPU, small settings
    .venv/bin/python benchmarks/optim_methods.py --device cuda --images 64 --fgvis-steps 500

The model is untrained (seeded): the cost per step does not depend on the weights, but the
number of steps does (FGVis stops when the class flips, the inverse's solver when its costs
settle), so both runs explain exactly the same images with the same settings; the table also
gives the largest difference between the batched and the one-at-a-time maps.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from xaibench.methods.fgvis import FGVis
from xaibench.methods.inverse import Inverse
from xaibench.models.classifier import Classifier
from xaibench.models.configs import ModelConfig, build_model


def make_model(arch: str, size: int, device: torch.device) -> Classifier:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if arch == "xml_vgg":
            from xaibench.methods.joint.model import XMLVGG

            model = Classifier(XMLVGG(2), cam_layer="net.features.6")
        elif arch == "joint_xml_vgg":
            from xaibench.methods.joint.train import JointModelConfig

            model = build_model(JointModelConfig(id="m", arch="joint_xml_vgg"), 2, (size, size))
        else:
            model = build_model(ModelConfig(id="m", arch="vgg16"), 2, (size, size))
    return model.to(device).eval()


def timed(method, model, images, labels, device) -> tuple[float, float, torch.Tensor, torch.Tensor]:
    """(s / image batched, s / image one at a time, batched maps, one-at-a-time maps)."""
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    method.attribute(model, images[:1], labels[:1])  # warm-up
    sync()
    t = time.perf_counter()
    batched = method.attribute(model, images, labels)
    sync()
    t_batched = time.perf_counter() - t
    t = time.perf_counter()
    single = torch.cat([method.attribute(model, images[i:i + 1], labels[i:i + 1])
                        for i in range(images.shape[0])])
    sync()
    t_single = time.perf_counter() - t
    n = images.shape[0]
    return t_batched / n, t_single / n, batched, single


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--arch", choices=["xml_vgg", "joint_xml_vgg", "vgg16"], default="xml_vgg")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--fgvis-steps", type=int, default=50, help="FGVis max_steps (default 500)")
    parser.add_argument("--inverse-steps", type=int, default=100, help="inverse max_steps (default 3000)")
    args = parser.parse_args()
    device = torch.device(args.device)
    model = make_model(args.arch, args.size, device)
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(args.images, 3, args.size, args.size, generator=gen).to(device)
    with torch.no_grad():
        labels = model(images).argmax(1)
    cpu = platform.processor() or platform.machine()
    print(f"{args.arch} (untrained), {args.images} images {args.size}x{args.size}, {device}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {cpu}, "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print("| method | settings | s / image batched | s / image one at a time | ratio | max map diff |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, method, settings in (
        ("fgvis", FGVis(max_steps=args.fgvis_steps), f"max_steps={args.fgvis_steps}"),
        ("inverse", Inverse(max_steps=args.inverse_steps), f"max_steps={args.inverse_steps}"),
    ):
        batched, single, a, b = timed(method, model, images, labels, device)
        diff = (a - b).abs().max().item()
        print(f"| {name} | {settings} | {batched:.3f} | {single:.3f} | {single / batched:.1f}x | "
              f"{diff:.2g} |", flush=True)


if __name__ == "__main__":
    main()
