"""NIH-NCI cervigrams with cervix masks, labelled by the worst histology (the xML paper's data).

On-disk format of the xML repository (github.com/icrto/xML, ``PyTorch/Dataset.py``,
``load_NIH_NCI``)::

    <root>/data/<collection>/covariate_data.xls   one per collection (ALTS, Biopsy, CVT, NHS);
                                                  4 preamble rows, then the header row
    <root>/data/<collection>/<stem>.jpg           the image of GG_IMAGE_ID (its 4-character
                                                  extension replaced by .jpg)
    <root>/data/<collection>/<stem>_mask.jpg      its cervix mask (white = cervix)

``<root>/<collection>/`` works too when there is no ``data/`` folder. Columns used:
GG_IMAGE_ID, GG_PATIENT_ID and WRST_HIST_AFTER (the worst histology after the visit; -2, "." or
empty mean unknown and the row is skipped). Label as in the original: healthy (0) when the code is
<= 1, cancer (1) otherwise. The header row is found by its column names, so a sheet whose preamble
rows were deleted reads the same.

Spreadsheets: ``covariate_data.csv`` is read first when present (Python's csv module, no extra
package); else ``covariate_data.xlsx`` or the original ``covariate_data.xls``, through pandas
with the python-calamine engine (or xlrd / openpyxl when those are installed instead). No engine
is a dependency of xaibench: ``pip install xaibench[excel]`` (python-calamine), or convert the
sheets once, e.g. ``libreoffice --headless --convert-to csv covariate_data.xls``.

The split is by patient (GG_PATIENT_ID): no patient has images in two splits. (The original
grouped by row number instead, so a patient's images leaked across splits.) Patients are
stratified by their worst label; ``test_fraction`` of the patients go to test (paper: 0.05),
``val_fraction`` of the rest to validation (0.2).
"""

from __future__ import annotations

import csv
import importlib.util
import math
from pathlib import Path
from typing import Any

from xaibench.plugins import DataError, Dataset, ParamError

from .files import (
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
from .splitting import grouped_split

CLASSES = ("healthy", "cancer")
COLLECTIONS = ("ALTS", "Biopsy", "CVT", "NHS")
COLUMNS = ("GG_IMAGE_ID", "GG_PATIENT_ID", "WRST_HIST_AFTER")
SHEET = "covariate_data"
MISSING_HISTOLOGY = ("", ".", "-2", "nan")
LAYOUT = "data/<collection>/covariate_data.xls (or .csv) with <image>.jpg and <image>_mask.jpg beside it"


def _cell(value: Any) -> str:
    """A spreadsheet cell as text: '' for empty, integers without '.0'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def read_sheet(path: Path) -> list[list[str]]:
    """All rows of a covariate spreadsheet (.csv, .xlsx or .xls) as text cells."""
    if path.suffix == ".csv":
        with text_lines(path) as f:
            return [[c.strip() for c in row] for row in csv.reader(f)]
    engines = ("python_calamine", "openpyxl" if path.suffix == ".xlsx" else "xlrd")
    engine = next((e for e in engines if importlib.util.find_spec(e) is not None), None)
    if engine is None:
        raise DataError(f"reading {path} needs a spreadsheet engine, and none is installed: run "
                        f"`pip install python-calamine` (or `pip install xaibench[excel]`), or save "
                        f"the sheet as {path.with_suffix('.csv').name} beside it (e.g. libreoffice "
                        f"--headless --convert-to csv {path.name})")
    engine = engine.removeprefix("python_")
    import pandas as pd

    try:
        table = pd.read_excel(path, header=None, dtype=object, engine=engine)
    except Exception as exc:  # the engines raise many types for a bad file
        raise DataError(f"cannot read spreadsheet {path}: {exc}") from None
    return [[_cell(v) for v in row] for row in table.itertuples(index=False)]


def find_sheet(folder: Path) -> Path:
    """The covariate spreadsheet of a collection folder (.csv preferred, then .xlsx, .xls)."""
    for suffix in (".csv", ".xlsx", ".xls"):
        path = folder / f"{SHEET}{suffix}"
        if path.is_file():
            return path
    raise DataError(f"no {SHEET}.csv, .xlsx or .xls in {folder}: each collection folder needs its "
                    f"covariate spreadsheet beside its images")


def histology(text: str, where: str) -> int | None:
    """The worst-histology code of a cell, or None when unknown (-2, '.' or empty)."""
    if text in MISSING_HISTOLOGY:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value.is_integer():
        raise DataError(f"{where}: WRST_HIST_AFTER {text!r} is not a histology code (an integer: <= 1 "
                        f"is {CLASSES[0]}, >= 2 {CLASSES[1]}; -2, '.' or empty mean unknown)")
    return None if value == -2 else int(value)


def read_collection(folder: Path, *, masks: bool) -> tuple[Path, list[Record]]:
    """The labelled records of one collection folder and its spreadsheet's path."""
    sheet = find_sheet(folder)
    rows = read_sheet(sheet)
    header = next((k for k, row in enumerate(rows[:50]) if "GG_IMAGE_ID" in row), None)
    if header is None:
        raise DataError(f"{sheet}: no header row naming GG_IMAGE_ID in its first 50 rows; expected "
                        f"the columns {', '.join(COLUMNS)}")
    names = rows[header]
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        raise DataError(f"{sheet} row {header + 1}: missing column(s) {', '.join(missing)} "
                        f"(needs {', '.join(COLUMNS)})")
    col = {c: names.index(c) for c in COLUMNS}
    records: list[Record] = []
    seen: dict[str, int] = {}
    for k in range(header + 1, len(rows)):
        row = rows[k] + [""] * (len(names) - len(rows[k]))
        image_id, patient, hist = (row[col[c]] for c in COLUMNS)
        where = f"{sheet} row {k + 1}"
        if not any(row):
            continue
        code = histology(hist, where)
        if code is None:
            continue  # unknown histology: the original drops the row
        if not image_id or not patient:
            raise DataError(f"{where}: empty {'GG_IMAGE_ID' if not image_id else 'GG_PATIENT_ID'}")
        if image_id in seen:
            raise DataError(f"{where}: image {image_id} is listed twice (also row {seen[image_id]})")
        seen[image_id] = k + 1
        stem = Path(image_id).stem if Path(image_id).suffix else image_id
        records.append(Record(
            image=folder / f"{stem}.jpg", label=0 if code <= 1 else 1, origin=where,
            mask=folder / f"{stem}_mask.jpg" if masks else None, group=patient))
    return sheet, records


class NIHCervix(Dataset):
    """NIH-NCI cervix (Rio-Torto et al., PRL 2020): worst histology code <= 1 vs >= 2, cervix masks.

    Args:
        root: the folder holding data/<collection>/ (see the module docstring).
        image_size: side of the square images the loader yields (paper: 224).
        center_crop: keep the aspect ratio and crop the centre square; False resizes straight
            to image_size x image_size like the original.
        collections: the collection folders to read (paper: ALTS, Biopsy, CVT, NHS).
        masks: read the <image>_mask.jpg cervix masks (needed by the hybrid loss and the
            mask metrics); False for data without them.
        test_fraction: fraction of the patients for testing (paper: 0.05).
        val_fraction: fraction of the remaining patients for validation (paper: 0.2).
    """

    def __init__(
        self,
        *,
        root: str = "data/nih_cervix",
        image_size: int = 224,
        center_crop: bool = False,
        collections: tuple[str, ...] = COLLECTIONS,
        masks: bool = True,
        test_fraction: float = 0.05,
        val_fraction: float = 0.2,
    ) -> None:
        check_geometry(image_size)
        check_fraction("test_fraction", test_fraction)
        check_fraction("val_fraction", val_fraction)
        if not collections or len(set(collections)) != len(collections):
            raise ParamError("collections", f"must name distinct collection folders, got {list(collections)}")
        self.root = check_root(root, layout=LAYOUT)
        self.size = image_size
        self.center_crop = center_crop
        self.collections = tuple(collections)
        self.masks = masks
        self.test_fraction = test_fraction
        self.val_fraction = val_fraction

    @property
    def has_masks(self) -> bool:
        return self.masks

    @property
    def image_size(self) -> tuple[int, int]:
        return (self.size, self.size)

    def read_index(self) -> Index:
        """Every labelled image of the configured collections."""
        base = self.root / "data" if (self.root / "data").is_dir() else self.root
        sources, records = [], []
        for name in self.collections:
            folder = base / name
            if not folder.is_dir():
                raise DataError(f"collection folder {folder} not found; expected {LAYOUT} under "
                                f"{self.root} (or set dataset.collections)")
            sheet, found = read_collection(folder, masks=self.masks)
            sources.append(sheet)
            records += found
        if not records:
            raise DataError(f"no image with a known histology in {', '.join(map(str, sources))}")
        return Index(root=self.root, records=tuple(records), class_names=CLASSES, sources=tuple(sources))

    def fingerprint(self) -> str:
        return content_fingerprint(self.read_index())

    def load(self, *, cache_dir: Path, seed: int) -> Splits:
        """Read the spreadsheets, split by patient (seeded, stratified), decode; cached on disk."""
        index = self.read_index()
        plan = grouped_split([r.label for r in index.records], [r.group for r in index.records],
                             test_fraction=self.test_fraction, val_fraction=self.val_fraction,
                             seed=seed, what=f"the patients of {self.root}")
        return load_index(index, plan, name="nih_cervix",
                          path=self.cache_file(cache_dir, seed, content_fingerprint(index)),
                          size=self.size, center_crop=self.center_crop,
                          read_mask=binary_mask if self.masks else None)
