"""Seeds: the one place where seeds are derived from the run's seed (per shard, per training
phase, per image), so randomised methods draw the same noise for an image whatever batch it is
in, and every random draw of a run follows from ``[run] seed``."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager

import torch


def derive_seed(*parts: object, digits: int = 12) -> int:
    """A seed derived from ``parts`` (the run's seed and what the draw is for, e.g. ``(seed,
    shard)`` or ``("phase-order", seed, phase)``): the first ``digits`` hex digits of the SHA-256
    of their JSON. Stable across processes, machines and versions."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return int(hashlib.sha256(blob).hexdigest()[:digits], 16)


def image_seed(seed: int, image: torch.Tensor) -> int:
    """A 63-bit seed from ``seed`` and the exact contents of one image [3, H, W].

    The same image (bit for bit, on any device) gets the same seed under the same ``seed``,
    independently of its position in a batch or of the other images beside it.
    """
    digest = hashlib.sha256()
    digest.update(int(seed).to_bytes(8, "little", signed=True))
    digest.update(str(tuple(image.shape)).encode())
    digest.update(image.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return int.from_bytes(digest.digest()[:8], "little") & (2**63 - 1)


def image_generator(seed: int, image: torch.Tensor) -> torch.Generator:
    """A CPU generator seeded with :func:`image_seed` (draw on CPU, then move to the device,
    so that CPU and CUDA runs draw the same numbers)."""
    return torch.Generator(device="cpu").manual_seed(image_seed(seed, image))


@contextmanager
def seeded_global_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's global generator of ``device`` for the block, restoring every global RNG
    state afterwards: for library code that draws from the global RNG and takes no generator
    (e.g. captum's NoiseTunnel). Only that device's generator is seeded (``torch.manual_seed``
    would reseed every GPU and leave the others changed)."""
    cuda = device.type == "cuda"
    with torch.random.fork_rng(devices=[device] if cuda else [], device_type="cuda"):
        if cuda:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        else:
            torch.random.default_generator.manual_seed(seed)
        yield


@contextmanager
def seeded_global_rngs(seed: int, device: torch.device) -> Iterator[None]:
    """:func:`seeded_global_rng`, and numpy's global generator seeded too, both restored
    afterwards: for libraries that draw from both (captum's GradientShap picks baselines with
    numpy; Quantus draws its noise and perturbations from either)."""
    import numpy as np

    state = np.random.get_state()
    try:
        with seeded_global_rng(seed, device):
            np.random.seed(seed % 2**32)
            yield
    finally:
        np.random.set_state(state)
