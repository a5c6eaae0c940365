"""Tiny datasets written in each real on-disk format (a few images of 48 x 40 px).

Images are stored W x H = 48 x 40 (not square, so a transposition would show), each with one
object box drawn brighter than the background; masks are white filled boxes on black.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

W, H = 48, 40
CATS = {"Abyssinian": 1, "Bengal": 6, "Siamese": 33}
DOGS = {"american_bulldog": 2, "beagle": 5, "pug": 26}


def box_of(k: int) -> tuple[int, int, int, int]:
    """A varied object box (x0, y0, x1, y1), integer corners, half-open, inside 48 x 40."""
    return (4 + 3 * (k % 4), 3 + 2 * (k % 3), 26 + 3 * (k % 5), 22 + 3 * (k % 4))


def picture(k: int, box: tuple[int, int, int, int], colour: tuple[int, int, int]) -> Image.Image:
    """A noisy dark background with a bright box of ``colour``."""
    rng = np.random.default_rng(k)
    pixels = rng.integers(0, 60, (H, W, 3), dtype=np.uint8)
    x0, y0, x1, y1 = box
    pixels[y0:y1, x0:x1] = colour
    return Image.fromarray(pixels)


def mask_picture(box: tuple[int, int, int, int], size: tuple[int, int] = (W, H)) -> Image.Image:
    out = np.zeros((size[1], size[0]), np.uint8)
    x0, y0, x1, y1 = box
    out[y0:y1, x0:x1] = 255
    return Image.fromarray(out)


def write_imagenet_hvz(root: Path, *, per_class: int = 6) -> dict[str, tuple[str, tuple[int, ...]]]:
    """data.csv, images/<label>/<id>.JPEG, masks/<label>/<id>_mask.JPEG; returns id -> (label, box)."""
    root.mkdir(parents=True, exist_ok=True)
    truth = {}
    rows = []
    classes = (("horse", "n02389026", (200, 120, 60)), ("zebra", "n02391049", (230, 230, 230)))
    for label, wnid, colour in classes:
        for k in range(per_class):
            image_id = f"{wnid}_{100 + k}.JPEG"
            box = box_of(k + (7 if label == "zebra" else 0))
            (root / "images" / label).mkdir(parents=True, exist_ok=True)
            (root / "masks" / label).mkdir(parents=True, exist_ok=True)
            picture(len(truth), box, colour).save(root / "images" / label / image_id, "JPEG", quality=95)
            mask_picture(box).convert("RGB").save(root / "masks" / label / f"{wnid}_{100 + k}_mask.JPEG",
                                                  "JPEG", quality=95)
            truth[image_id] = (label, box)
            rows.append((image_id, label))
    with (root / "data.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["imageID", "label"])
        writer.writerows(rows)
    return truth


# patient -> list of worst-histology codes, one image each ("." and -2: unknown, no image written)
NIH_PATIENTS = {
    "ALTS": {"P01": [0, 0], "P02": [3], "P03": [1, ".", 4], "P04": [2, 2]},
    "Biopsy": {"P05": [0], "P06": [4, 1], "P07": [-2, 0]},
    "CVT": {"P08": [1, 1, 1], "P09": [3], "P10": [0]},
    "NHS": {"P11": [2], "P12": [0, 0], "P13": [4], "P14": [1]},
}


def write_nih_cervix(root: Path, *, fmt: str = "csv", patients: dict | None = None) -> dict[str, tuple]:
    """data/<collection>/covariate_data.<fmt> (4 preamble rows, header on row 5) with
    <id>.jpg and <id>_mask.jpg beside it; returns image stem -> (patient, label, box)."""
    patients = NIH_PATIENTS if patients is None else patients
    truth = {}
    k = 0
    for collection, table in patients.items():
        folder = root / "data" / collection
        folder.mkdir(parents=True, exist_ok=True)
        rows = [["NIH-NCI covariate data"], [f"collection {collection}"], [], ["generated for tests"],
                ["GG_PATIENT_ID", "GG_IMAGE_ID", "AGE_GRP", "HPV_STATUS", "WRST_HIST_AFTER",
                 "WRST_HIST_AFTER_DT"]]
        for patient, codes in table.items():
            for code in codes:
                stem = f"{collection[:3].upper()}{k:04d}"
                rows.append([patient, f"{stem}.tif", "3", "-1", code, "."])
                k += 1
                if code in (".", -2):
                    continue
                box = box_of(k)
                picture(k, box, (220, 140, 150)).save(folder / f"{stem}.jpg", "JPEG", quality=95)
                mask_picture(box).save(folder / f"{stem}_mask.jpg", "JPEG", quality=95)
                truth[stem] = (patient, 0 if int(code) <= 1 else 1, box)
        write_sheet(folder / f"covariate_data.{fmt}", rows)
    return truth


def write_sheet(path: Path, rows: list[list]) -> None:
    """Rows to .csv, or to a real Excel 97 .xls (with xlwt)."""
    if path.suffix == ".csv":
        with path.open("w", newline="") as f:
            csv.writer(f).writerows(rows)
        return
    import xlwt

    book = xlwt.Workbook()
    sheet = book.add_sheet("covariates")
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            sheet.write(r, c, value)
    book.save(str(path))


def pets_ids(per_breed: int, start: int = 1) -> list[tuple[str, int, int]]:
    """(image id, CLASS-ID, SPECIES) for a few cat and dog breeds."""
    out = []
    for breeds, species in ((CATS, 1), (DOGS, 2)):
        for name, class_id in breeds.items():
            out += [(f"{name}_{start + j}", class_id, species) for j in range(per_breed)]
    return out


def write_oxford_pets(root: Path, *, per_breed: tuple[int, int] = (3, 2)) -> dict[str, tuple]:
    """root/oxford-iiit-pet/{images/*.jpg, annotations/trimaps/*.png, annotations/{trainval,test}.txt};
    returns image id -> (class id, species, box). Trimaps: 1 in the box's inner part, 3 on a
    2-px band along its edge, 2 elsewhere."""
    base = root / "oxford-iiit-pet"
    (base / "images").mkdir(parents=True, exist_ok=True)
    (base / "annotations" / "trimaps").mkdir(parents=True, exist_ok=True)
    truth = {}
    for split, ids in (("trainval", pets_ids(per_breed[0])), ("test", pets_ids(per_breed[1], 100))):
        lines = []
        for image_id, class_id, species in ids:
            k = len(truth)
            box = box_of(k)
            picture(k, box, (150, 100, 50) if species == 1 else (90, 160, 200)).save(
                base / "images" / f"{image_id}.jpg", "JPEG", quality=95)
            tri = np.full((H, W), 2, np.uint8)
            x0, y0, x1, y1 = box
            tri[y0:y1, x0:x1] = 3
            tri[y0 + 2:y1 - 2, x0 + 2:x1 - 2] = 1
            Image.fromarray(tri).save(base / "annotations" / "trimaps" / f"{image_id}.png")
            lines.append(f"{image_id} {class_id} {species} 1")
            truth[image_id] = (class_id, species, box)
        (base / "annotations" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return truth


def write_folder(root: Path, *, classes: dict[str, int] | None = None, masks: str = "none",
                 suffix: str = ".png") -> dict[str, tuple]:
    """images/<class>/<name><suffix> with masks/<class>/<name>_mask.png or boxes.csv;
    returns relative path -> (class, box)."""
    classes = {"cat": 5, "dog": 5, "bird": 5} if classes is None else classes
    truth = {}
    rows = []
    for c, n in classes.items():
        (root / "images" / c).mkdir(parents=True, exist_ok=True)
        for j in range(n):
            k = len(truth)
            box = box_of(k)
            name = f"{c}_{j:02d}"
            picture(k, box, (40 * (k % 6), 200, 120)).save(root / "images" / c / f"{name}{suffix}")
            if masks == "files":
                (root / "masks" / c).mkdir(parents=True, exist_ok=True)
                mask_picture(box).save(root / "masks" / c / f"{name}_mask.png")
            rows.append([f"{c}/{name}{suffix}", *box])
            truth[f"{c}/{name}{suffix}"] = (c, box)
    if masks == "boxes":
        with (root / "boxes.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["file", "x0", "y0", "x1", "y1"])
            writer.writerows(rows)
    return truth


# The first five lines of the real LOC_synset_mapping.txt (line k = class k of ImageNet models).
SYNSETS = (("n01440764", "tench, Tinca tinca"), ("n01443537", "goldfish, Carassius auratus"),
           ("n01484850", "great white shark, white shark, man-eater, man-eating shark, Carcharodon "
                         "carcharias"),
           ("n01491361", "tiger shark, Galeocerdo cuvieri"), ("n01494475", "hammerhead, hammerhead shark"))
ILSVRC_LABELS = (3, 0, 4, 1, 2, 0, 3, 1, 4, 2, 0, 3)  # class of val image k + 1


def voc_xml(stem: str, size: tuple[int, int], objects: list[tuple[str, tuple[int, int, int, int]]]) -> str:
    """A PASCAL VOC annotation as in ILSVRC2012_bbox_val_v3.tgz (tab-indented, inclusive corners)."""
    body = "".join(
        f"\t<object>\n\t\t<name>{name}</name>\n\t\t<pose>Unspecified</pose>\n\t\t<truncated>0</truncated>\n"
        f"\t\t<difficult>0</difficult>\n\t\t<bndbox>\n\t\t\t<xmin>{x0}</xmin>\n\t\t\t<ymin>{y0}</ymin>\n"
        f"\t\t\t<xmax>{x1}</xmax>\n\t\t\t<ymax>{y1}</ymax>\n\t\t</bndbox>\n\t</object>\n"
        for name, (x0, y0, x1, y1) in objects)
    return (f"<annotation>\n\t<folder>val</folder>\n\t<filename>{stem}</filename>\n\t<source>\n"
            f"\t\t<database>ILSVRC_2012</database>\n\t</source>\n\t<size>\n\t\t<width>{size[0]}</width>\n"
            f"\t\t<height>{size[1]}</height>\n\t\t<depth>3</depth>\n\t</size>\n\t<segmented>0</segmented>\n"
            f"{body}</annotation>\n")


def write_ilsvrc_files(root: Path, images: dict[str, tuple[Image.Image, list[tuple[str, tuple]]]],
                       *, fmt: str = "both") -> None:
    """LOC_synset_mapping.txt, val/<stem>.JPEG, and val/<stem>.xml and/or LOC_val_solution.csv
    for ``images``: stem -> (picture, [(synset, (xmin, ymin, xmax, ymax) inclusive)])."""
    (root / "val").mkdir(parents=True, exist_ok=True)
    (root / "LOC_synset_mapping.txt").write_text("".join(f"{w} {d}\n" for w, d in SYNSETS))
    rows = []
    for stem, (image, objects) in images.items():
        image.save(root / "val" / f"{stem}.JPEG", "JPEG", quality=95)
        if fmt in ("xml", "both"):
            (root / "val" / f"{stem}.xml").write_text(voc_xml(stem, image.size, objects))
        rows.append([stem, " ".join(f"{n} {x0} {y0} {x1} {y1}" for n, (x0, y0, x1, y1) in objects) + " "])
    if fmt in ("csv", "both"):
        with (root / "LOC_val_solution.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["ImageId", "PredictionString"])
            writer.writerows(rows[::-1])  # row order is not file order


def write_ilsvrc(root: Path, *, fmt: str = "both") -> dict[str, tuple[int, list[tuple[int, ...]]]]:
    """Twelve 48 x 40 validation images of the five synsets in the ILSVRC layout; returns
    stem -> (class index, half-open boxes of the class). Image 2 has two boxes of its class
    and one of another; image 3's box reaches past the right and bottom edges."""
    images, truth = {}, {}
    for k, label in enumerate(ILSVRC_LABELS):
        stem = f"ILSVRC2012_val_{k + 1:08d}"
        x0, y0, x1, y1 = box_of(k)
        objects = [(SYNSETS[label][0], (x0, y0, x1 - 1, y1 - 1))]  # inclusive corners
        boxes = [box_of(k)]
        if k == 1:
            objects += [(SYNSETS[label][0], (36, 2, 45, 9)), (SYNSETS[2][0], (30, 28, 44, 37))]
            boxes.append((36, 2, 46, 10))
        if k == 2:
            objects = [(SYNSETS[label][0], (30, 20, 48, 40))]  # xmax = width, ymax = height
            boxes = [(30, 20, 48, 40)]
        pixels = np.array(picture(k, boxes[0], (60 * label, 250, 120)))
        for bx0, by0, bx1, by1 in boxes[1:]:
            pixels[by0:by1, bx0:bx1] = (60 * label, 250, 120)
        images[stem] = (Image.fromarray(pixels), objects)
        truth[stem] = (label, boxes)
    write_ilsvrc_files(root, images, fmt=fmt)
    return truth
