"""The xML synthetic dataset: find the triangle among outlined shapes.

A re-implementation of the synthetic generator of Rio-Torto et al. (the talk's "simple dataset
with / without colour cues"): a white background with black 1-px outlines of circles and
{p/q} star polygons; the target shape is the triangle ({3/1}); an image is positive iff it
holds at least one triangle. In the ``colour`` variant the targets are drawn in green, a cue
a classifier can use without understanding shape; in ``nocolour`` it must see the shape.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image, ImageDraw

from xaibench.io import load_checked, save_checked
from xaibench.plugins import Dataset, ParamError, check_range

from .splits import Split, Splits

BLACK = (0, 0, 0)
GREEN = (0, 170, 0)
# Star polygons {p/q} with gcd(p, q) = 1 and p >= 4 (compounds such as {6/2} would hide triangles).
DISTRACTORS = tuple(
    (p, q) for p in range(4, 9) for q in range(1, (p + 1) // 2) if math.gcd(p, q) == 1
)


def star_vertices(
    centre: tuple[float, float], radius: float, p: int, q: int, angle: float
) -> list[list[tuple[float, float]]]:
    """The closed line paths of the star polygon {p/q}: one path visiting every vertex."""
    pts = [
        (centre[0] + radius * math.cos(angle + 2 * math.pi * k / p),
         centre[1] + radius * math.sin(angle + 2 * math.pi * k / p))
        for k in range(p)
    ]
    order = [(k * q) % p for k in range(p + 1)]
    return [[pts[i] for i in order]]


def circumradius_box(centre: tuple[float, float], radius: float, size: int) -> np.ndarray:
    """The original xML box of a shape: its centre +- its circumradius r, the 2r square
    [cx - r, cx + r] x [cy - r, cy + r] clipped to the image -> bool [size, size].

    A pixel (row i, column j) covers [j - 0.5, j + 0.5] x [i - 0.5, i + 0.5]; it is in the box when
    it overlaps the square: |j - cx| < r + 0.5 and |i - cy| < r + 0.5. The vertices lie at distance
    r from the centre, so the drawn outline is inside, but for a rasterised pixel at a vertex.
    """
    cx, cy = centre
    rows = np.abs(np.arange(size) - cy) < radius + 0.5
    cols = np.abs(np.arange(size) - cx) < radius + 0.5
    return rows[:, None] & cols[None, :]


def render(
    shapes: list[tuple[str, tuple[float, float], float, int, int, float]],
    size: int,
    colour: bool,
    box: Literal["tight", "circumradius"] = "tight",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw shapes and return (image uint8 [H,W,3], object mask bool [H,W], box mask bool [H,W]).

    ``shapes`` holds (kind, centre, radius, p, q, angle) with kind "circle", "star" or "target".
    The object mask is each target polygon filled plus its drawn outline. The box mask is, with
    ``box = "tight"``, the filled bounding box of each target's object-mask pixels (box >= object
    >= outline); with ``"circumradius"``, the original's box: the target's centre +- its
    circumradius r (the vertices' radius), a 2r square clipped to the image (see
    :func:`circumradius_box`).
    """
    img = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    obj = np.zeros((size, size), bool)
    boxes = np.zeros((size, size), bool)
    for kind, (cx, cy), r, p, q, angle in shapes:
        if kind == "circle":
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=BLACK, width=1)
            continue
        path = star_vertices((cx, cy), r, p, q, angle)[0]
        draw.line(path, fill=GREEN if (kind == "target" and colour) else BLACK, width=1)
        if kind == "target":
            m = Image.new("L", (size, size), 0)
            mdraw = ImageDraw.Draw(m)
            mdraw.polygon(path[:-1], fill=1, outline=1)
            mdraw.line(path, fill=1, width=1)
            one = np.asarray(m, dtype=bool)
            obj |= one
            if box == "circumradius":
                boxes |= circumradius_box((cx, cy), r, size)
                continue
            ys, xs = np.nonzero(one)
            if len(ys):
                boxes[ys.min():ys.max() + 1, xs.min():xs.max() + 1] = True
    return np.asarray(img, dtype=np.uint8), obj, boxes


def sample_shapes(
    rng: np.random.Generator,
    *,
    positive: bool,
    size: int,
    radius: tuple[int, int],
    n_shapes: tuple[int, int],
    max_targets: int,
    simplified: bool,
) -> list[tuple[str, tuple[float, float], float, int, int, float]]:
    """Random non-overlapping shapes; a positive image holds 1..max_targets triangles."""
    count = int(rng.integers(n_shapes[0], n_shapes[1] + 1))
    n_targets = int(rng.integers(1, min(max_targets, count) + 1)) if positive else 0
    kinds = ["target"] * n_targets + ["other"] * (count - n_targets)
    if not simplified:
        rng.shuffle(kinds)
    placed: list[tuple[float, float, float]] = []
    shapes = []
    for kind in kinds:
        r = float(rng.integers(radius[0], radius[1] + 1))
        for _ in range(100):  # rejection sampling for a free spot
            cx, cy = rng.uniform(r + 1, size - r - 2, size=2)
            if all((cx - x) ** 2 + (cy - y) ** 2 > (r + rr + 2) ** 2 for x, y, rr in placed):
                break
        else:
            continue  # no room left: skip (generate() redraws a positive left without target)
        placed.append((cx, cy, r))
        angle = float(rng.uniform(0, 2 * math.pi))
        if kind == "target":
            shapes.append(("target", (cx, cy), r, 3, 1, angle))
        elif simplified or rng.random() < 1 / (len(DISTRACTORS) + 1):
            shapes.append(("circle", (cx, cy), r, 0, 0, angle))
        else:
            p, q = DISTRACTORS[int(rng.integers(len(DISTRACTORS)))]
            shapes.append(("star", (cx, cy), r, p, q, angle))
    return shapes


def generate(
    n: int,
    *,
    seed: int | list[int],
    size: int,
    variant: str,
    radius: tuple[int, int],
    n_shapes: tuple[int, int],
    max_targets: int,
    simplified: bool,
    box: Literal["tight", "circumradius"] = "tight",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` images with balanced labels: (images uint8 [n,3,H,W], labels, object, box masks);
    ``box`` as in :func:`render` (the images do not depend on it)."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 2)
    images = np.empty((n, size, size, 3), np.uint8)
    objs = np.empty((n, size, size), bool)
    boxes = np.empty((n, size, size), bool)
    for i, positive in enumerate(labels):
        while True:
            shapes = sample_shapes(rng, positive=bool(positive), size=size, radius=radius,
                                   n_shapes=n_shapes, max_targets=max_targets,
                                   simplified=simplified)
            if bool(positive) == any(s[0] == "target" for s in shapes):
                break
        images[i], objs[i], boxes[i] = render(shapes, size, colour=variant == "colour", box=box)
    return (torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
            torch.from_numpy(labels).long(), torch.from_numpy(objs), torch.from_numpy(boxes))


class Synthetic(Dataset):
    """xML synthetic shapes: triangle present or not (colour / nocolour), exact and box masks.

    Args:
        variant: "colour" draws targets in green; "nocolour" draws every shape in black.
        image_size: side of the square images (the paper uses 224).
        n_train, n_val, n_test: split sizes (labels balanced in each split).
        radius: [min, max] shape radius in pixels (paper: [7, 19] at 224 px).
        n_shapes: [min, max] shapes per image (paper: [3, 19]).
        max_targets: most triangles in a positive image.
        simplified: the paper's simplified mode: the first shape is the target with
            probability 0.5 and all other shapes are circles.
        mask: which ground truth the batches carry: "box" (filled boxes around targets, the
            paper's weak annotation) or "object" (the filled triangles).
        box: the box around a target: "tight" (the bounding box of the drawn triangle) or
            "circumradius" (the original's: the triangle's centre +- its circumradius, a 2r
            square clipped to the image).
    """

    def __init__(
        self,
        *,
        variant: Literal["colour", "nocolour"] = "colour",
        image_size: int = 224,
        n_train: int = 2000,
        n_val: int = 400,
        n_test: int = 400,
        radius: tuple[int, ...] = (7, 19),
        n_shapes: tuple[int, ...] = (3, 19),
        max_targets: int = 1,
        simplified: bool = False,
        mask: Literal["box", "object"] = "box",
        box: Literal["tight", "circumradius"] = "tight",
    ) -> None:
        check_range("image_size", image_size, low=16, high=4096)
        for key, value in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
            check_range(key, value, low=2)
        for key, pair in (("radius", radius), ("n_shapes", n_shapes)):
            if len(pair) != 2 or pair[0] > pair[1] or pair[0] < 1:
                raise ParamError(key, f"must be [min, max] with 1 <= min <= max, got {list(pair)}")
        if 2 * radius[1] + 4 > image_size:
            raise ParamError("radius", f"max radius {radius[1]} does not fit in a "
                                       f"{image_size}-px image; use at most {(image_size - 4) // 2}")
        check_range("max_targets", max_targets, low=1)
        self.variant = variant
        self.size = image_size
        self.counts = (n_train, n_val, n_test)
        self.radius = (int(radius[0]), int(radius[1]))
        self.n_shapes = (int(n_shapes[0]), int(n_shapes[1]))
        self.max_targets = max_targets
        self.simplified = simplified
        self.mask = mask
        self.box = box

    @property
    def has_masks(self) -> bool:
        return True

    @property
    def image_size(self) -> tuple[int, int]:
        return (self.size, self.size)

    @property
    def num_classes(self) -> int:
        return 2

    def _generate(self, split: int, n: int, seed: int) -> dict[str, torch.Tensor]:
        images, labels, obj, box = generate(
            n, seed=[seed, split], size=self.size, variant=self.variant, radius=self.radius,
            n_shapes=self.n_shapes, max_targets=self.max_targets, simplified=self.simplified,
            box=self.box)
        return {"images": images, "labels": labels, "object": obj, "box": box}

    def load(self, *, cache_dir: Path, seed: int) -> Splits:
        """Generate the splits (seeded), cached in ``cache_dir`` keyed by every parameter."""
        path = self.cache_file(cache_dir, seed)
        data = load_checked(path)
        if data is None:
            data = [self._generate(i, n, seed) for i, n in enumerate(self.counts)]
            save_checked(path, data)
        train, val, test = (Split(d["images"], d["labels"], d[self.mask]) for d in data)
        return Splits(train, val, test, class_names=("no triangle", "triangle"))
