"""What every on-disk dataset shares: image records, checks, decoding, resizing and the cache.

A file loader (``imagenet_hvz``, ``nih_cervix``, ``oxford_pets``, ``folder``) reads its index
(a CSV, a spreadsheet, list files or a folder tree) into an :class:`Index` of :class:`Record`s,
plans its split, and calls :func:`load_index`, which

1. stats every listed image and mask (a missing one is an error naming it and where it is
   listed) and fingerprints them (path, size, modification time) together with the index files'
   contents, the root and every parameter: the cache key;
2. returns the cached splits when that key was decoded before (no image is decoded again);
3. otherwise reads every header first (an unreadable file, a mask of another size than its
   image, a box outside its image are errors naming the file), then decodes and resizes every
   image and mask, and writes the cache atomically: an error leaves nothing half-written.

Geometry (the same for an image and its mask): the mask is stacked on the image as a fourth
plane and the stack is resized with bilinear interpolation and antialiasing
(``torchvision.transforms.v2.functional.resize``), either straight to ``size x size`` (the
xML loaders' behaviour; the aspect ratio changes) or, with ``center_crop``, with the shorter
side to ``size`` and then the central ``size x size`` square. Image values are rounded back to
uint8; a mask pixel is in the object when its resized value is >= 0.5 (the original truncated
instead, see reference/NOTES.md). Images keep their stored H x W pixel grid: no transposition
and no EXIF rotation (masks and boxes refer to the stored grid). No normalisation: that is the
model's first layer.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from xaibench.io import load_checked, save_checked
from xaibench.plugins import DataError, ParamError, check_range

from .splits import Split, Splits
from .splitting import Plan

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

Box = tuple[float, float, float, float]
MaskReader = Callable[[Path], np.ndarray]


@dataclass(frozen=True)
class Record:
    """One listed image.

    Attributes:
        image: the image file.
        label: class index into the dataset's class names.
        origin: where the image is listed, for messages (e.g. "data.csv line 4").
        mask: the mask file, or None.
        boxes: object boxes, each ((x0, y0, x1, y1), where it is listed), corners in pixels of
            the stored image; a pixel is inside when its centre is (so integer corners are
            half-open: x0 <= x < x1).
        group: images sharing a non-empty group (e.g. a patient) stay in one split.
    """

    image: Path
    label: int
    origin: str
    mask: Path | None = None
    boxes: tuple[tuple[Box, str], ...] = ()
    group: str = ""


@dataclass(frozen=True)
class Index:
    """A dataset's listing: its records, class names and the files the listing was read from."""

    root: Path
    records: tuple[Record, ...]
    class_names: tuple[str, ...]
    sources: tuple[Path, ...] = ()


# -- parameters --------------------------------------------------------------------------------


def check_root(root: str, *, layout: str) -> Path:
    """The ``root`` parameter as a Path; ParamError unless it is an existing folder.

    Args:
        root: the configured folder (relative paths are relative to the working directory).
        layout: what should be inside, for the message.
    """
    path = Path(root).expanduser()
    if not path.is_dir():
        raise ParamError("root", f"data folder {str(path)!r} does not exist (resolved: {path.resolve()}); "
                                 f"put the data there ({layout}) or point dataset.root "
                                 f"(or --data-root) at it")
    return path


def check_geometry(image_size: int) -> None:
    """ParamError unless ``image_size`` is a usable side length."""
    check_range("image_size", image_size, low=16, high=4096)


def check_fraction(key: str, value: float) -> None:
    """ParamError unless ``value`` is a fraction strictly between 0 and 1."""
    if not 0.0 < value < 1.0:
        raise ParamError(key, f"must be in (0, 1), got {value!r}")


# -- reading -------------------------------------------------------------------------------------


def text_lines(path: Path) -> io.StringIO:
    """A UTF-8 text file (BOM allowed) ready for the csv module.

    Raises:
        DataError: naming the file when it is not UTF-8 text.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text ({exc}); save it as UTF-8") from None
    if "\0" in text:
        raise DataError(f"{path} holds NUL bytes: not a text file")
    return io.StringIO(text, newline="")


def read_pixels(path: Path, kind: str, mode: str | None) -> np.ndarray:
    """Decode ``path`` fully (converted to ``mode`` unless None) as a numpy array.

    Raises:
        DataError: naming the file when it is not an image, is truncated or corrupt.
    """
    try:
        with Image.open(path) as im:
            im.load()
            out = im if mode is None or im.mode == mode else im.convert(mode)
            return np.array(out)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot decode {kind} {path}: {exc} (re-copy or remove the file)") from None


def header_size(path: Path, kind: str) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels."""
    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot read {kind} {path}: {exc} (not an image, or an unsupported "
                        f"format; re-copy or remove the file)") from None


def binary_mask(path: Path) -> np.ndarray:
    """A mask image as float32 [H, W] in [0, 1]: its grey level over 255 (white = object)."""
    return read_pixels(path, "mask", "L").astype(np.float32) / 255.0


def box_mask(boxes: Sequence[Box], width: int, height: int) -> np.ndarray:
    """Filled boxes as float32 [H, W]: 1 where a pixel's centre lies in a box."""
    out = np.zeros((height, width), np.float32)
    cx = np.arange(width) + 0.5
    cy = np.arange(height) + 0.5
    for x0, y0, x1, y1 in boxes:
        out[np.ix_((cy >= y0) & (cy <= y1), (cx >= x0) & (cx <= x1))] = 1.0
    return out


# -- geometry ------------------------------------------------------------------------------------


def check_crop_fraction(crop_fraction: float) -> None:
    """ParamError unless ``crop_fraction`` is in (0, 1]."""
    if not 0.0 < crop_fraction <= 1.0:
        raise ParamError("crop_fraction", f"must be in (0, 1], got {crop_fraction!r}")


def resize_pair(
    image: torch.Tensor, mask: torch.Tensor | None, *, size: int, center_crop: bool,
    crop_fraction: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Resize an image and its mask by the same transform.

    Args:
        image: uint8 [3, H, W].
        mask: float [H, W] in [0, 1], or None.
        size: output side.
        center_crop: keep the aspect ratio (shorter side to ``floor(size / crop_fraction)``) and
            crop the central ``size x size`` square; otherwise resize straight to ``size x size``.
        crop_fraction: with ``center_crop``, the crop's share of the resized shorter side
            (ImageNet evaluation: 0.875, i.e. resize to 256 and crop 224; 1: crop the whole
            shorter side).

    Returns:
        (uint8 [3, size, size], bool [size, size] or None); mask = resized value >= 0.5.
    """
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    h, w = image.shape[-2:]
    if center_crop:
        short = max(size, math.floor(round(size / crop_fraction, 9)))
        scale = short / min(h, w)
        target = [max(short, round(h * scale)), max(short, round(w * scale))]
    else:
        target = [size, size]
    planes = image.float() if mask is None else torch.cat([image.float(), mask[None].float()])
    if [h, w] != target:
        planes = TF.resize(planes, target, interpolation=InterpolationMode.BILINEAR, antialias=True)
    if center_crop:
        planes = TF.center_crop(planes, [size, size])
    out = planes[:3].round().clamp(0, 255).to(torch.uint8)
    return out, None if mask is None else planes[3] >= 0.5


# -- loading -------------------------------------------------------------------------------------


def _regular(path: Path) -> os.stat_result | None:
    """The stat of a regular file, or None when ``path`` is missing or not a file."""
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return st if stat.S_ISREG(st.st_mode) else None


def fingerprint(index: Index) -> str:
    """A hash of the root, the index files' contents and every listed file's (path, size, mtime).

    Raises:
        DataError: naming the first missing image or mask (and how many more are missing).
    """
    digest = hashlib.sha256(str(index.root.resolve()).encode())
    for source in index.sources:
        digest.update(f"{source}\0".encode() + hashlib.sha256(source.read_bytes()).digest())
    missing: list[str] = []
    for r in index.records:
        for kind, path in (("image", r.image), ("mask", r.mask)):
            if path is None:
                continue
            st = _regular(path)
            if st is None:
                what = f"missing {kind} {path}"
                if kind == "mask":
                    what += f" for image {r.image}"
                missing.append(f"{what} (listed in {r.origin})")
                continue
            digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    if missing:
        more = f"; and {len(missing) - 1} more missing file(s)" if len(missing) > 1 else ""
        raise DataError(missing[0] + more)
    return digest.hexdigest()


def check_headers(index: Index, *, clip_boxes: bool = False) -> list[tuple[int, int]]:
    """Read every image and mask header: (width, height) per record.

    Args:
        clip_boxes: boxes reaching outside their image are clipped to it (the mask only covers
            pixels of the image anyway) instead of being an error.

    Raises:
        DataError: an unreadable file, a mask of another size than its image, or a box outside
            its image (unless ``clip_boxes``), naming the file.
    """
    sizes = []
    for r in index.records:
        w, h = header_size(r.image, "image")
        if r.mask is not None:
            mw, mh = header_size(r.mask, "mask")
            if (mw, mh) != (w, h):
                raise DataError(f"mask {r.mask} is {mw}x{mh} (W x H) but its image {r.image} is "
                                f"{w}x{h}; a mask must have its image's size")
        for (x0, y0, x1, y1), where in r.boxes:
            if clip_boxes:
                x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
                if x0 < x1 and y0 < y1:
                    continue
            if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
                raise DataError(f"{where}: box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) does not fit the "
                                f"{w}x{h} image {r.image}; need 0 <= x0 < x1 <= width and "
                                f"0 <= y0 < y1 <= height")
        sizes.append((w, h))
    return sizes


def decode(
    records: Sequence[Record], *, size: int, center_crop: bool, read_mask: MaskReader | None,
    boxes: bool, crop_fraction: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Decode and resize records: (uint8 [N, 3, s, s], bool [N, s, s] or None).

    Masks come from ``read_mask(record.mask)`` when given, else from the records' boxes when
    ``boxes``, else there are none.
    """
    n = len(records)
    images = torch.empty((n, 3, size, size), dtype=torch.uint8)
    masks = torch.empty((n, size, size), dtype=torch.bool) if read_mask or boxes else None
    for i, r in enumerate(records):
        pixels = read_pixels(r.image, "image", "RGB")
        image = torch.from_numpy(pixels).permute(2, 0, 1)
        h, w = pixels.shape[:2]
        mask = None
        if read_mask is not None and r.mask is not None:
            m = read_mask(r.mask)
            if m.shape != (h, w):  # headers agreed, pixels did not (a lying header)
                raise DataError(f"mask {r.mask} decodes to {m.shape[1]}x{m.shape[0]} (W x H) but its "
                                f"image {r.image} to {w}x{h}")
            mask = torch.from_numpy(m)
        elif masks is not None:
            mask = torch.from_numpy(box_mask([box for box, _ in r.boxes], w, h))
        images[i], out_mask = resize_pair(image, mask, size=size, center_crop=center_crop,
                                          crop_fraction=crop_fraction)
        if masks is not None:
            masks[i] = out_mask
    return images, masks


def load_index(
    index: Index,
    plan: Plan,
    *,
    name: str,
    path: Path,
    size: int,
    center_crop: bool,
    read_mask: MaskReader | None = None,
    boxes: bool = False,
    crop_fraction: float = 1.0,
    clip_boxes: bool = False,
    may_be_empty: tuple[str, ...] = (),
) -> Splits:
    """Build (or read from ``path``) the splits of ``index`` along ``plan``.

    Args:
        index: the records; ``plan`` indexes them as (train, val, test).
        name: the dataset's registry name (in messages).
        path: the cache file of the decoded splits, keyed by the dataset's settings, the seed and
            the index's :func:`fingerprint` (``Dataset.cache_file``).
        size, center_crop: the geometry (see the module docstring).
        read_mask: reads a record's mask file as float [H, W] in [0, 1]; None: no mask files.
        boxes: masks are the records' boxes (an image without boxes has an empty mask).
        crop_fraction: see :func:`resize_pair`.
        clip_boxes: clip boxes to their image instead of rejecting them (:func:`check_headers`).
        may_be_empty: splits allowed to hold no image (e.g. ("train", "val") for data that is
            only evaluated on).
    """
    for part, members in zip(("train", "val", "test"), plan):
        if not members and part not in may_be_empty:
            raise DataError(f"{name}: the {part} split of {index.root} is empty; add data or "
                            f"lower the held-out sizes")
    data = load_checked(path)
    if data is None:
        check_headers(index, clip_boxes=clip_boxes)
        data = {"class_names": list(index.class_names)}
        for part, members in zip(("train", "val", "test"), plan):
            records = [index.records[i] for i in members]
            images, masks = decode(records, size=size, center_crop=center_crop, read_mask=read_mask,
                                   boxes=boxes, crop_fraction=crop_fraction)
            data[part] = {
                "images": images, "masks": masks,
                "labels": torch.tensor([r.label for r in records], dtype=torch.long),
                "files": [str(r.image.relative_to(index.root)) if r.image.is_relative_to(index.root)
                          else str(r.image) for r in records],
            }
        save_checked(path, data)
    train, val, test = (Split(data[p]["images"], data[p]["labels"], data[p]["masks"])
                        for p in ("train", "val", "test"))
    return Splits(train, val, test, class_names=tuple(data["class_names"]),
                  fingerprint=path.stem)
