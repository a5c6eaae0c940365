"""ILSVRC (ImageNet-1k) validation images with their object boxes as masks.

On-disk layout (the Kaggle "ImageNet Object Localization Challenge" files, or the original
``ILSVRC2012_img_val.tar`` and ``ILSVRC2012_bbox_val_v3.tgz`` beside a synset mapping)::

    <root>/LOC_synset_mapping.txt        one class per line, "n01440764 tench, Tinca tinca"; the
                                         line order is the class index torchvision and timm
                                         ImageNet models predict (line 1 = class 0)
    <root>/val/ILSVRC2012_val_00000001.JPEG ...
                                         the images (images_dir; any image extension, sub-folders
                                         such as val/n01440764/ are fine). Kaggle:
                                         images_dir = "ILSVRC/Data/CLS-LOC/val"
    annotations = "xml" (default):
    <root>/val/ILSVRC2012_val_00000001.xml
                                         PASCAL VOC XML per image (annotations_dir; Kaggle:
                                         "ILSVRC/Annotations/CLS-LOC/val"):
                                         <object><name>n01751748</name><bndbox><xmin>..
                                         <ymin>..<xmax>..<ymax>..</bndbox></object> per box
    annotations = "csv":
    <root>/LOC_val_solution.csv          header ImageId,PredictionString; ImageId is the image's
                                         file stem, PredictionString "synset xmin ymin xmax ymax"
                                         repeated per box

Every image in images_dir needs its annotation (annotations of absent images are ignored, so a
subset of the images works). The image's class is the synset of its first box (ILSVRC
validation images have boxes of one class); its mask is the union of the boxes of that class.
Box corners are pixel indices of the stored image with xmax/ymax inclusive: a box covers the
columns xmin..xmax and rows ymin..ymax; boxes reaching outside the image are clipped to it
(some ImageNet boxes do). The mask is resized and cropped with the image (``datasets/files.py``).

This is evaluation data: by default every image is a test image and the train and validation
splits are empty (``trainable`` is False), for models trained elsewhere (e.g. torchvision or
timm ImageNet weights). ``test_fraction`` below 1 splits it (stratified, seeded) to train a model
too.
"""

from __future__ import annotations

import csv
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Literal

from xaibench.plugins import DataError, Dataset, ParamError, check_range

from .files import (
    Box,
    Index,
    Record,
    check_crop_fraction,
    check_fraction,
    check_geometry,
    check_root,
    load_index,
    text_lines,
)
from .files import fingerprint as content_fingerprint
from .folder import image_files
from .splits import Splits
from .splitting import held_out, split_sizes, stratified_split

LAYOUT = "LOC_synset_mapping.txt, val/ILSVRC2012_val_*.JPEG and val/*.xml or LOC_val_solution.csv"
WNID = re.compile(r"n\d{8}")

Boxes = tuple[tuple[Box, str], ...]


def read_synsets(path: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(wnids, descriptions) in file order from a LOC_synset_mapping.txt.

    Raises:
        DataError: a missing or empty file, a malformed line or a synset listed twice, naming
            the file and line.
    """
    if not path.is_file():
        raise DataError(f"synset mapping {path} not found: the ilsvrc dataset needs it (one "
                        f"'n01440764 tench, Tinca tinca' line per class, in the models' class order, "
                        f"as in Kaggle's LOC_synset_mapping.txt); put it there or set "
                        f"dataset.synsets_file")
    wnids: list[str] = []
    names: list[str] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text_lines(path).read().splitlines(), start=1):
        if not line.strip():
            continue
        wnid, _, description = line.strip().partition(" ")
        if not WNID.fullmatch(wnid):
            raise DataError(f"{path} line {number}: expected '<synset> <description>' such as "
                            f"'n01440764 tench, Tinca tinca', got {line.strip()[:60]!r}")
        if wnid in seen:
            raise DataError(f"{path} line {number}: synset {wnid} is listed twice (also line {seen[wnid]})")
        seen[wnid] = number
        wnids.append(wnid)
        names.append(description.strip())
    if not wnids:
        raise DataError(f"{path} lists no synsets")
    return tuple(wnids), tuple(names)


def _corners(values: list[str], where: str) -> Box:
    """Inclusive pixel indices xmin, ymin, xmax, ymax -> half-open corners (x0, y0, x1, y1)."""
    try:
        xmin, ymin, xmax, ymax = (float(v) for v in values)
    except ValueError:
        raise DataError(f"{where}: box corners must be numbers, got {values}") from None
    if xmin > xmax or ymin > ymax:
        raise DataError(f"{where}: box (xmin {xmin:g}, ymin {ymin:g}, xmax {xmax:g}, ymax {ymax:g}) has "
                        f"its maximum below its minimum")
    return (xmin, ymin, xmax + 1, ymax + 1)


def read_solution(path: Path, known: set[str]) -> dict[str, list[tuple[str, Box, str]]]:
    """ImageId -> [(synset, box, where)] from a LOC_val_solution.csv.

    Raises:
        DataError: a missing file or column, a malformed PredictionString, an unknown synset or an
            image listed twice, naming the file and line.
    """
    if not path.is_file():
        raise DataError(f"box file {path} not found: annotations = 'csv' reads ImageId,PredictionString "
                        f"rows from it (Kaggle's LOC_val_solution.csv); put it there, set "
                        f"dataset.solution_file, or use annotations = 'xml'")
    out: dict[str, list[tuple[str, Box, str]]] = {}
    lines: dict[str, int] = {}
    with text_lines(path) as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("ImageId", "PredictionString") if c not in (reader.fieldnames or ())]
        if missing:
            found = ", ".join(reader.fieldnames or ()) or "nothing"
            raise DataError(f"{path}: missing column(s) {', '.join(missing)}; the header must be "
                            f"ImageId,PredictionString (found: {found})")
        for row in reader:
            line = reader.line_num
            where = f"{path} line {line}"
            image_id = (row["ImageId"] or "").strip()
            if image_id in lines:
                raise DataError(f"{where}: {image_id} is listed twice (also line {lines[image_id]})")
            lines[image_id] = line
            fields = (row["PredictionString"] or "").split()
            if not fields or len(fields) % 5:
                raise DataError(f"{where}: the PredictionString of {image_id} must be groups of "
                                f"'synset xmin ymin xmax ymax', got {len(fields)} field(s)")
            boxes = []
            for k in range(0, len(fields), 5):
                synset = fields[k]
                if synset not in known:
                    raise DataError(f"{where}: synset {synset!r} of {image_id} is not in the synset mapping")
                boxes.append((synset, _corners(fields[k + 1:k + 5], where), where))
            out[image_id] = boxes
    return out


def read_voc(path: Path, known: set[str]) -> list[tuple[str, Box, str]]:
    """[(synset, box, where)] of one PASCAL VOC XML annotation.

    Raises:
        DataError: a missing or unparsable file, an object without name or bndbox, an unknown
            synset, or no object at all, naming the file.
    """
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError:
        raise DataError(f"missing annotation {path}: annotations = 'xml' needs one <stem>.xml per image "
                        f"in dataset.annotations_dir (or use annotations = 'csv' with "
                        f"LOC_val_solution.csv)") from None
    except (ET.ParseError, OSError) as exc:
        raise DataError(f"cannot parse annotation {path}: {exc} (re-copy the file)") from None
    boxes = []
    for k, obj in enumerate(root.iter("object"), start=1):
        where = f"{path} object {k}"
        synset = (obj.findtext("name") or "").strip()
        if synset not in known:
            raise DataError(f"{where}: synset {synset!r} is not in the synset mapping")
        box = obj.find("bndbox")
        values = [None if box is None else box.findtext(t) for t in ("xmin", "ymin", "xmax", "ymax")]
        if any(v is None for v in values):
            raise DataError(f"{where}: needs <bndbox> with <xmin>, <ymin>, <xmax> and <ymax>")
        boxes.append((synset, _corners([str(v).strip() for v in values], where), where))
    if not boxes:
        raise DataError(f"{path} has no <object>: the image's class is unknown")
    return boxes


class ILSVRC(Dataset):
    """ILSVRC-2012 (ImageNet-1k) validation images, labels as the models' class indices, box masks.

    Russakovsky et al., "ImageNet Large Scale Visual Recognition Challenge", IJCV 2015. Layout,
    labels and box conventions: see the module docstring.

    Args:
        root: the folder holding the synset mapping, the images and the annotations.
        images_dir: the image folder, relative to root.
        synsets_file: the synset mapping, relative to root (its line order is the class index).
        annotations: "xml" (a PASCAL VOC file per image) or "csv" (LOC_val_solution.csv).
        annotations_dir: the XML folder, relative to root (annotations = "xml").
        solution_file: the box CSV, relative to root (annotations = "csv").
        masks: yield the box masks (False: labels only).
        image_size: side of the square images the loader yields.
        center_crop: keep the aspect ratio and crop the centre (ImageNet evaluation); False
            resizes straight to image_size x image_size.
        crop_fraction: with center_crop, the shorter side is resized to image_size / crop_fraction
            and the centre image_size square kept (0.875: 256 -> 224, torchvision's recipe).
        classes: synsets to keep (e.g. ["n01440764", "n02102040"]); empty: all.
        relabel: False keeps each label the synset's line in the mapping and every synset as a
            class (what a pretrained 1000-class model predicts); True numbers the kept ``classes``
            0, 1, ... in the order given (for a model trained on them).
        n_images: use a class-stratified sample of this many images (drawn from the run seed);
            0: all.
        test_fraction: share of the images for testing; 1: all (train and val empty).
        val_fraction: share of the rest for validation (test_fraction < 1).
    """

    def __init__(
        self,
        *,
        root: str = "data/ilsvrc",
        images_dir: str = "val",
        synsets_file: str = "LOC_synset_mapping.txt",
        annotations: Literal["xml", "csv"] = "xml",
        annotations_dir: str = "val",
        solution_file: str = "LOC_val_solution.csv",
        masks: bool = True,
        image_size: int = 224,
        center_crop: bool = True,
        crop_fraction: float = 0.875,
        classes: tuple[str, ...] = (),
        relabel: bool = False,
        n_images: int = 0,
        test_fraction: float = 1.0,
        val_fraction: float = 0.2,
    ) -> None:
        check_geometry(image_size)
        check_crop_fraction(crop_fraction)
        check_range("n_images", n_images, low=0)
        if not 0.0 < test_fraction <= 1.0:
            raise ParamError("test_fraction", f"must be in (0, 1] (1: every image is a test image), "
                                              f"got {test_fraction!r}")
        check_fraction("val_fraction", val_fraction)
        for wnid in classes:
            if not WNID.fullmatch(wnid):
                raise ParamError("classes", f"{wnid!r} is not a synset id such as 'n01440764'")
        if len(set(classes)) != len(classes):
            raise ParamError("classes", f"lists a synset twice: {list(classes)}")
        if relabel and not classes:
            raise ParamError("relabel", "needs the classes to number (dataset.classes)")
        self.root = check_root(root, layout=LAYOUT)
        self.images_dir = images_dir
        self.synsets_file = synsets_file
        self.annotations = annotations
        self.annotations_dir = annotations_dir
        self.solution_file = solution_file
        self.masks = masks
        self.size = image_size
        self.center_crop = center_crop
        self.crop_fraction = crop_fraction
        self.classes = tuple(classes)
        self.relabel = relabel
        self.n_images = n_images
        self.test_fraction = test_fraction
        self.val_fraction = val_fraction

    @property
    def has_masks(self) -> bool:
        return self.masks

    @property
    def image_size(self) -> tuple[int, int]:
        return (self.size, self.size)

    @property
    def trainable(self) -> bool:
        return self.test_fraction < 1.0

    @property
    def num_classes(self) -> int | None:
        """The kept classes when relabelled, else the synset mapping's lines (None when the file
        cannot be read yet: loading reports it)."""
        if self.relabel:
            return len(self.classes)
        try:
            return len(read_synsets(self.root / self.synsets_file)[0])
        except DataError:
            return None

    def read_index(self) -> Index:
        """Every image of images_dir (of the kept classes) with its label and boxes."""
        synsets_path = self.root / self.synsets_file
        wnids, _ = read_synsets(synsets_path)
        known = set(wnids)
        for wnid in self.classes:
            if wnid not in known:
                raise DataError(f"class {wnid!r} of dataset.classes is not in the synset mapping "
                                f"{synsets_path}")
        images_dir = self.root / self.images_dir
        if not images_dir.is_dir():
            raise DataError(f"image folder {images_dir} not found: put the validation images "
                            f"(ILSVRC2012_val_00000001.JPEG ...) there or set dataset.images_dir "
                            f"(Kaggle layout: ILSVRC/Data/CLS-LOC/val)")
        files = image_files(images_dir, skip_suffix=None)
        if not files:
            raise DataError(f"no images in {images_dir}: expected ILSVRC2012_val_*.JPEG files")
        seen: dict[str, Path] = {}
        for path in files:
            if path.stem in seen:
                raise DataError(f"image {path.stem} is in {images_dir} twice: {seen[path.stem]} and {path}")
            seen[path.stem] = path
        sources: tuple[Path, ...] = (synsets_path,)
        if self.annotations == "csv":
            table = self.root / self.solution_file
            solution = read_solution(table, known)
            sources += (table,)

            def boxes_of(image: Path) -> list[tuple[str, Box, str]]:
                if image.stem not in solution:
                    raise DataError(f"image {image} has no row in {table} (ImageId {image.stem}); add it "
                                    f"or remove the image")
                return solution[image.stem]
        else:
            folder = self.root / self.annotations_dir

            def boxes_of(image: Path) -> list[tuple[str, Box, str]]:
                return read_voc(folder / f"{image.stem}.xml", known)

            sources += tuple(folder / f"{path.stem}.xml" for path in files)  # in the cache key

        keep = self.classes or wnids
        label_of = {w: k for k, w in enumerate(self.classes if self.relabel else wnids)}
        records = []
        for path in files:
            boxes = boxes_of(path)
            synset = boxes[0][0]
            if synset not in keep:
                continue
            own: Boxes = tuple((box, where) for s, box, where in boxes if s == synset)
            records.append(Record(image=path, label=label_of[synset], origin=f"image folder {images_dir}",
                                  boxes=own if self.masks else ()))
        if not records:
            raise DataError(f"no image of the classes {', '.join(self.classes)} in {images_dir}")
        names = self.classes if self.relabel else wnids
        return Index(root=self.root, records=tuple(records), class_names=names, sources=sources)

    def plan(self, labels: list[int], seed: int) -> tuple[list[int], list[int], list[int]]:
        """(train, val, test) record indices: the stratified sample of n_images, then the split."""
        chosen = list(range(len(labels)))
        if self.n_images and self.n_images < len(labels):
            _, _, chosen = stratified_split(labels, n_test=self.n_images, n_val=0, seed=seed)
        if self.test_fraction == 1.0:
            return [], [], chosen
        sub = [labels[i] for i in chosen]
        n_test, n_val = split_sizes(len(sub), test=held_out(len(sub), self.test_fraction),
                                    val_fraction=self.val_fraction,
                                    what=f"{len(sub)} images in {self.root / self.images_dir}")
        parts = stratified_split(sub, n_test=n_test, n_val=n_val, seed=seed)
        return tuple([chosen[i] for i in part] for part in parts)  # type: ignore[return-value]

    def fingerprint(self) -> str:
        return content_fingerprint(self.read_index())

    def load(self, *, cache_dir: Path, seed: int) -> Splits:
        """List the images, read labels and boxes, sample and split (seeded), decode, resize and
        crop; cached on disk."""
        index = self.read_index()
        plan = self.plan([r.label for r in index.records], seed)
        return load_index(
            index, plan, name="ilsvrc", path=self.cache_file(cache_dir, seed, content_fingerprint(index)),
            size=self.size, center_crop=self.center_crop, crop_fraction=self.crop_fraction,
            boxes=self.masks, clip_boxes=True,
            may_be_empty=("train", "val") if self.test_fraction == 1.0 else ())
