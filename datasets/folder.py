"""Any folder of images, one sub-folder per class, with optional masks or boxes.

Evaluate on your own data without writing code::

    <root>/images/<class>/<name>.jpg             .jpg .jpeg .png .bmp .tif .tiff .webp (any case);
                                                 nested folders inside a class folder are fine
    <root>/masks/<class>/<name>_mask.png         masks = "files": the same relative path under
                                                 mask_dir with mask_suffix added, any image
                                                 extension; white (>= 128) = object, the image's size
    <root>/boxes.csv                             masks = "boxes": header file,x0,y0,x1,y1; file is
                                                 the path under images/ (cat/001.jpg); corners in
                                                 pixels of the stored image, a pixel is inside when
                                                 its centre is (integer corners: x0 <= x < x1); a
                                                 file may have several rows (boxes); an image with
                                                 no row has an empty mask

Class names are the sub-folder names, sorted (label = position), or the ``classes`` list in that
order. Masks beside the images work too: ``mask_dir = "images"`` (files ending in the suffix are
then masks, not images). Splits are stratified by class and seeded.
"""

from __future__ import annotations

import csv
from pathlib import Path, PurePosixPath
from typing import Literal

from xaibench.plugins import DataError, Dataset, ParamError

from .files import (
    IMAGE_SUFFIXES,
    Box,
    Index,
    Record,
    binary_mask,
    check_fraction,
    check_geometry,
    check_root,
    load_index,
    text_lines,
)
from .files import fingerprint as content_fingerprint
from .splits import Splits
from .splitting import held_out, split_sizes, stratified_split

LAYOUT = "images/<class>/*.jpg|png, optionally masks/<class>/*_mask.png or boxes.csv"


def image_files(folder: Path, *, skip_suffix: str | None) -> list[Path]:
    """Image files under ``folder`` (recursively, sorted), hidden ones and masks skipped."""
    out = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if skip_suffix and path.stem.endswith(skip_suffix):
            continue
        if path.is_file():
            out.append(path)
    return out


def read_boxes(path: Path, images: dict[str, Path]) -> dict[Path, list[tuple[Box, str]]]:
    """(box, CSV line) per image from a file,x0,y0,x1,y1 CSV; ``images`` maps posix paths
    under images/ to the image files."""
    if not path.is_file():
        raise DataError(f"box file {path} not found (masks = 'boxes' reads the columns file, x0, y0, "
                        f"x1, y1 from it; set dataset.boxes_file to another file)")
    boxes: dict[Path, list[tuple[Box, str]]] = {}
    with text_lines(path) as f:
        reader = csv.DictReader(f)
        need = ("file", "x0", "y0", "x1", "y1")
        missing = [c for c in need if c not in (reader.fieldnames or ())]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)}; the header must be "
                            f"file,x0,y0,x1,y1 (found: {', '.join(reader.fieldnames or ()) or 'nothing'})")
        for row in reader:
            where = f"{path} line {reader.line_num}"
            name = PurePosixPath((row["file"] or "").strip().replace("\\", "/"))
            if name.parts[:1] == ("images",):
                name = PurePosixPath(*name.parts[1:])
            if str(name) not in images:
                raise DataError(f"{where}: {row['file']!r} is not an image under the images folder "
                                f"(give its path below images/, e.g. cat/001.jpg)")
            try:
                box = tuple(float(row[c]) for c in need[1:])
            except (TypeError, ValueError):
                raise DataError(f"{where}: box corners must be numbers, got "
                                f"{[row[c] for c in need[1:]]}") from None
            boxes.setdefault(images[str(name)], []).append((box, where))  # type: ignore[arg-type]
    return boxes


def class_folders(images_dir: Path) -> list[str]:
    """The class folders under ``images_dir``, sorted (hidden folders left out)."""
    return sorted(d.name for d in images_dir.iterdir() if d.is_dir() and not d.name.startswith("."))


class Folder(Dataset):
    """Your own images: <root>/images/<class>/*, optional mask files or a box CSV.

    Args:
        root: the folder holding images/ (and masks/ or the box CSV; see the module docstring).
        image_size: side of the square images the loader yields.
        center_crop: keep the aspect ratio and crop the centre square; False resizes straight
            to image_size x image_size.
        classes: class names in label order; each must have a folder, and every folder must be
            listed. Empty: the sorted folder names.
        masks: "none", "files" (a mask image per image) or "boxes" (a CSV of boxes).
        mask_dir: the folder of the mask tree, relative to root ("images" for masks beside
            the images).
        mask_suffix: added to an image's name (before the extension) to name its mask.
        boxes_file: the box CSV, relative to root.
        test_fraction: fraction of the images for testing, stratified by class.
        val_fraction: fraction of the remaining images for validation.
    """

    def __init__(
        self,
        *,
        root: str = "data/folder",
        image_size: int = 224,
        center_crop: bool = False,
        classes: tuple[str, ...] = (),
        masks: Literal["none", "files", "boxes"] = "none",
        mask_dir: str = "masks",
        mask_suffix: str = "_mask",
        boxes_file: str = "boxes.csv",
        test_fraction: float = 0.2,
        val_fraction: float = 0.2,
    ) -> None:
        check_geometry(image_size)
        check_fraction("test_fraction", test_fraction)
        check_fraction("val_fraction", val_fraction)
        if len(set(classes)) != len(classes):
            raise ParamError("classes", f"lists a class twice: {list(classes)}")
        if masks == "files" and mask_dir == "images" and not mask_suffix:
            raise ParamError("mask_suffix", "must not be empty when the masks sit beside the images "
                                            "(mask_dir = 'images')")
        self.root = check_root(root, layout=LAYOUT)
        self.size = image_size
        self.center_crop = center_crop
        self.classes = tuple(classes)
        self.masks = masks
        self.mask_dir = mask_dir
        self.mask_suffix = mask_suffix
        self.boxes_file = boxes_file
        self.test_fraction = test_fraction
        self.val_fraction = val_fraction

    @property
    def has_masks(self) -> bool:
        return self.masks != "none"

    @property
    def image_size(self) -> tuple[int, int]:
        return (self.size, self.size)

    @property
    def num_classes(self) -> int | None:
        """The class list's length, else the number of class folders (None while images/ is
        missing: reading the data says what is wrong)."""
        images_dir = self.root / "images"
        if self.classes or not images_dir.is_dir():
            return len(self.classes) or None
        return len(class_folders(images_dir)) or None

    def find_mask(self, image: Path, images_dir: Path) -> Path:
        """The mask file of ``image``: same relative path under mask_dir, suffix added."""
        rel = image.relative_to(images_dir)
        stem = self.root / self.mask_dir / rel.parent / f"{rel.stem}{self.mask_suffix}"
        for suffix in dict.fromkeys((image.suffix, *IMAGE_SUFFIXES,
                                     *(s.upper() for s in IMAGE_SUFFIXES))):
            if (candidate := stem.with_name(stem.name + suffix)).is_file():
                return candidate
        raise DataError(f"missing mask for image {image}: expected {stem}{image.suffix} (or another "
                        f"image extension); masks = 'files' needs one mask per image")

    def read_index(self) -> Index:
        """Every image under images/<class>/, with its mask or boxes."""
        images_dir = self.root / "images"
        if not images_dir.is_dir():
            raise DataError(f"{images_dir} not found; a folder dataset needs {LAYOUT} under {self.root}")
        found = class_folders(images_dir)
        if not found:
            raise DataError(f"no class folders in {images_dir}: put each class's images in "
                            f"images/<class>/")
        if self.classes:
            for name in found:
                if name not in self.classes:
                    raise DataError(f"class folder {images_dir / name} is not in the class list "
                                    f"({', '.join(self.classes)}); add {name!r} to dataset.classes or "
                                    f"move the folder out of {images_dir}")
            for name in self.classes:
                if name not in found:
                    raise DataError(f"class {name!r} of dataset.classes has no folder {images_dir / name}")
        names = self.classes or tuple(found)
        skip = self.mask_suffix if self.masks == "files" and self.mask_dir == "images" else None
        records: list[Record] = []
        for label, name in enumerate(names):
            files = image_files(images_dir / name, skip_suffix=skip)
            if not files:
                raise DataError(f"empty class folder {images_dir / name}: no image files "
                                f"({', '.join(IMAGE_SUFFIXES)})")
            for path in files:
                mask = self.find_mask(path, images_dir) if self.masks == "files" else None
                records.append(Record(image=path, label=label, origin=f"class folder {images_dir / name}",
                                      mask=mask))
        sources: tuple[Path, ...] = ()
        if self.masks == "boxes":
            table = self.root / self.boxes_file
            by_name = {r.image.relative_to(images_dir).as_posix(): r.image for r in records}
            boxes = read_boxes(table, by_name)
            records = [Record(image=r.image, label=r.label, origin=r.origin,
                              boxes=tuple(boxes.get(r.image, ()))) for r in records]
            sources = (table,)
        return Index(root=self.root, records=tuple(records), class_names=names, sources=sources)

    def fingerprint(self) -> str:
        return content_fingerprint(self.read_index())

    def load(self, *, cache_dir: Path, seed: int) -> Splits:
        """List the tree, split (seeded, stratified), decode and resize; cached on disk."""
        index = self.read_index()
        labels = [r.label for r in index.records]
        n_test, n_val = split_sizes(len(labels), test=held_out(len(labels), self.test_fraction),
                                    val_fraction=self.val_fraction,
                                    what=f"{len(labels)} images in {self.root / 'images'}")
        plan = stratified_split(labels, n_test=n_test, n_val=n_val, seed=seed)
        return load_index(index, plan, name="folder",
                          path=self.cache_file(cache_dir, seed, content_fingerprint(index)),
                          size=self.size, center_crop=self.center_crop,
                          read_mask=binary_mask if self.masks == "files" else None,
                          boxes=self.masks == "boxes")
