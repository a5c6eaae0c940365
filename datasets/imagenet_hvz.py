"""ImagenetHVZ: ImageNet horses vs zebras with filled-box masks (the xML paper's dataset).

On-disk format of the xML repository (github.com/icrto/xML, ``PyTorch/Dataset.py``,
``load_imagenetHVZ``)::

    <root>/data.csv                         header "imageID,label" (other columns are ignored);
                                            imageID is the file name with its extension
                                            (n02389026_1234.JPEG), label the class NAME
    <root>/images/<label>/<imageID>         e.g. images/horse/n02389026_1234.JPEG
    <root>/masks/<label>/<stem>_mask.JPEG   e.g. masks/horse/n02389026_1234_mask.JPEG: white
                                            filled boxes on black, the image's size

Labels follow the original's LabelEncoder over the names: horse = 0, zebra = 1. The original
read images H x W but transposed them to W x H and truncated the resized masks; here images keep
H x W and masks are thresholded at 0.5 (reference/NOTES.md).
"""

from __future__ import annotations

import csv
from pathlib import Path

from xaibench.plugins import DataError, Dataset, check_range

from .files import (
    IMAGE_SUFFIXES,
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
from .splitting import split_sizes, stratified_split

CLASSES = ("horse", "zebra")
LAYOUT = "data.csv, images/<label>/<imageID>, masks/<label>/<id>_mask.JPEG"


def read_index(root: Path) -> Index:
    """The records listed in ``<root>/data.csv``.

    Raises:
        DataError: a missing or malformed data.csv, a label outside horse/zebra, an image
            listed twice.
    """
    table = root / "data.csv"
    if not table.is_file():
        raise DataError(f"{table} not found: ImagenetHVZ needs data.csv (columns imageID, label) "
                        f"beside images/ and masks/ in {root}")
    records = []
    seen: dict[str, int] = {}
    with text_lines(table) as f:
        reader = csv.DictReader(f)
        missing = {"imageID", "label"} - set(reader.fieldnames or ())
        if missing:
            found = ", ".join(reader.fieldnames or ()) or "nothing"
            raise DataError(f"{table}: missing column(s) {', '.join(sorted(missing))}; the header must "
                            f"name imageID and label (found: {found})")
        for row in reader:
            line = reader.line_num
            image_id, label = (row["imageID"] or "").strip(), (row["label"] or "").strip()
            if not image_id:
                raise DataError(f"{table} line {line}: empty imageID")
            if label not in CLASSES:
                raise DataError(f"{table} line {line}: label {label!r} of {image_id} is not in the class "
                                f"list ({', '.join(CLASSES)})")
            if image_id in seen:
                raise DataError(f"{table} line {line}: {image_id} is listed twice (also line "
                                f"{seen[image_id]})")
            seen[image_id] = line
            name = Path(image_id)
            if name.suffix.lower() not in IMAGE_SUFFIXES:
                name = Path(f"{image_id}.JPEG")
            records.append(Record(
                image=root / "images" / label / name, label=CLASSES.index(label),
                origin=f"{table} line {line}",
                mask=root / "masks" / label / f"{name.stem}_mask.JPEG"))
    if not records:
        raise DataError(f"{table} lists no images")
    return Index(root=root, records=tuple(records), class_names=CLASSES, sources=(table,))


class ImagenetHVZ(Dataset):
    """ImagenetHVZ (Rio-Torto et al., PRL 2020): horses vs zebras from ImageNet, box masks.

    Args:
        root: the folder holding data.csv, images/ and masks/ (see the module docstring).
        image_size: side of the square images the loader yields (paper: 224).
        center_crop: keep the aspect ratio and crop the centre square; False resizes straight
            to image_size x image_size like the original.
        n_test: test images (paper: 100), stratified by class.
        val_fraction: fraction of the remaining images for validation (paper: 0.2).
    """

    def __init__(
        self,
        *,
        root: str = "data/imagenet_hvz",
        image_size: int = 224,
        center_crop: bool = False,
        n_test: int = 100,
        val_fraction: float = 0.2,
    ) -> None:
        check_geometry(image_size)
        check_range("n_test", n_test, low=1)
        check_fraction("val_fraction", val_fraction)
        self.root = check_root(root, layout=LAYOUT)
        self.size = image_size
        self.center_crop = center_crop
        self.n_test = n_test
        self.val_fraction = val_fraction

    @property
    def has_masks(self) -> bool:
        return True

    @property
    def image_size(self) -> tuple[int, int]:
        return (self.size, self.size)

    def fingerprint(self) -> str:
        return content_fingerprint(read_index(self.root))

    def load(self, *, cache_dir: Path, seed: int) -> Splits:
        """Read data.csv, split (seeded, stratified), decode and resize; cached on disk."""
        index = read_index(self.root)
        labels = [r.label for r in index.records]
        what = f"{len(labels)} images in {self.root / 'data.csv'}"
        n_test, n_val = split_sizes(len(labels), test=self.n_test, val_fraction=self.val_fraction,
                                    what=what)
        plan = stratified_split(labels, n_test=n_test, n_val=n_val, seed=seed)
        return load_index(index, plan, name="imagenet_hvz",
                          path=self.cache_file(cache_dir, seed, content_fingerprint(index)),
                          size=self.size, center_crop=self.center_crop, read_mask=binary_mask)
