"""Oxford-IIIT Pet: cats vs dogs (or the 37 breeds), pet masks from the trimaps.

Parkhi, Vedaldi, Zisserman and Jawahar, "Cats and dogs", CVPR 2012. On-disk layout as
torchvision's ``OxfordIIITPet`` writes it (the two archives of the dataset's site extracted)::

    <root>/oxford-iiit-pet/images/<Image_id>.jpg
    <root>/oxford-iiit-pet/annotations/trimaps/<Image_id>.png   1 = pet, 2 = background,
                                                                 3 = boundary ("not classified")
    <root>/oxford-iiit-pet/annotations/trainval.txt              "<Image_id> <CLASS-ID> <SPECIES>
    <root>/oxford-iiit-pet/annotations/test.txt                   <BREED-ID>" per line: class 1-37,
                                                                 species 1 = cat, 2 = dog

``<root>`` may also be the ``oxford-iiit-pet`` folder itself. The list files, images and
trimaps are read directly, so that every file is checked before decoding; ``download = true``
lets torchvision's ``OxfordIIITPet`` fetch and extract the archives first, where the network
allows.

Splits: test is the official test list (or a stratified, seeded subset of ``n_test`` of it);
validation is ``val_fraction`` of the official trainval list, stratified by the target class.
Masks: the pet is trimap class 1; the boundary class 3, a thin band along the pet's outline
that holds fur and edges of the pet, counts as pet by default (``boundary = "pet"``) so that
explanations on the outline are not counted as outside the object; ``"background"`` excludes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from xaibench.plugins import DataError, Dataset, ParamError, check_range

from .files import Index, Record, check_fraction, check_geometry, load_index, read_pixels, text_lines
from .files import fingerprint as content_fingerprint
from .splits import Splits
from .splitting import held_out, stratified_split

URL = "https://www.robots.ox.ac.uk/~vgg/data/pets/"
# The 37 breeds in CLASS-ID order (1..37), named as torchvision names them.
BREEDS = (
    "Abyssinian", "American Bulldog", "American Pit Bull Terrier", "Basset Hound", "Beagle",
    "Bengal", "Birman", "Bombay", "Boxer", "British Shorthair", "Chihuahua", "Egyptian Mau",
    "English Cocker Spaniel", "English Setter", "German Shorthaired", "Great Pyrenees", "Havanese",
    "Japanese Chin", "Keeshond", "Leonberger", "Maine Coon", "Miniature Pinscher", "Newfoundland",
    "Persian", "Pomeranian", "Pug", "Ragdoll", "Russian Blue", "Saint Bernard", "Samoyed",
    "Scottish Terrier", "Shiba Inu", "Siamese", "Sphynx", "Staffordshire Bull Terrier",
    "Wheaten Terrier", "Yorkshire Terrier",
)
CATS = frozenset({"Abyssinian", "Bengal", "Birman", "Bombay", "British Shorthair", "Egyptian Mau",
                  "Maine Coon", "Persian", "Ragdoll", "Russian Blue", "Siamese", "Sphynx"})
SPECIES = ("cat", "dog")
LAYOUT = ("oxford-iiit-pet/images/*.jpg, oxford-iiit-pet/annotations/trimaps/*.png, "
          "oxford-iiit-pet/annotations/trainval.txt and test.txt")


def breed_of(image_id: str) -> str:
    """The breed name of an image id, e.g. "american_bulldog_12" -> "American Bulldog"."""
    return " ".join(part.title() for part in image_id.rsplit("_", 1)[0].split("_"))


def trimap_reader(boundary: str):
    """A mask reader: trimap file -> float32 [H, W], 1 on the pet (and boundary if "pet")."""
    keep = (1, 3) if boundary == "pet" else (1,)

    def read(path: Path) -> np.ndarray:
        values = read_pixels(path, "trimap", None)
        if values.ndim == 3:
            values = values[..., 0]
        bad = np.setdiff1d(np.unique(values), (1, 2, 3))
        if bad.size:
            raise DataError(f"trimap {path} holds value(s) {bad.tolist()[:5]}; an Oxford-IIIT Pet trimap "
                            f"holds only 1 (pet), 2 (background) and 3 (boundary)")
        return np.isin(values, keep).astype(np.float32)

    return read


def read_list(base: Path, split: str, target: str) -> list[Record]:
    """The records of annotations/<split>.txt, labelled by species or breed."""
    path = base / "annotations" / f"{split}.txt"
    if not path.is_file():
        raise DataError(f"{path} not found; expected {LAYOUT}")
    records = []
    for line_no, line in enumerate(text_lines(path).read().splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        where = f"{path} line {line_no}"
        try:
            image_id, class_id, species = fields[0], int(fields[1]), int(fields[2])
        except (IndexError, ValueError):
            raise DataError(f"{where}: expected '<Image_id> <CLASS-ID> <SPECIES> <BREED-ID>', "
                            f"got {line.strip()!r}") from None
        if not 1 <= class_id <= len(BREEDS):
            raise DataError(f"{where}: class {class_id} of {image_id} is not in the class list "
                            f"(1..{len(BREEDS)})")
        if species not in (1, 2):
            raise DataError(f"{where}: species {species} of {image_id} is not in the class list "
                            f"(1 = cat, 2 = dog)")
        breed = BREEDS[class_id - 1]
        if breed_of(image_id).lower() != breed.lower() or (breed in CATS) != (species == 1):
            raise DataError(f"{where}: {image_id} is listed as class {class_id} ({breed}) and species "
                            f"{species} ({SPECIES[species - 1]}), which disagree with its name")
        records.append(Record(
            image=base / "images" / f"{image_id}.jpg",
            label=class_id - 1 if target == "breed" else species - 1, origin=where,
            mask=base / "annotations" / "trimaps" / f"{image_id}.png"))
    if not records:
        raise DataError(f"{path} lists no images")
    return records


class OxfordPets(Dataset):
    """Oxford-IIIT Pet (Parkhi et al., CVPR 2012): cat vs dog or 37 breeds, trimap pet masks.

    Args:
        root: the folder holding oxford-iiit-pet/ (torchvision's layout; see the module
            docstring), or that folder itself.
        image_size: side of the square images the loader yields.
        center_crop: keep the aspect ratio and crop the centre square; False resizes straight
            to image_size x image_size.
        target: "species" (cat = 0, dog = 1) or "breed" (37 classes, CLASS-ID order).
        boundary: whether the trimap's boundary band counts as "pet" or "background".
        val_fraction: fraction of the official trainval list for validation.
        n_test: a stratified, seeded subset of this many official test images; omit for all.
        download: fetch and extract the archives with torchvision when they are missing
            (about 800 MB; needs network access).
    """

    def __init__(
        self,
        *,
        root: str = "data/oxford_pets",
        image_size: int = 224,
        center_crop: bool = False,
        target: Literal["species", "breed"] = "species",
        boundary: Literal["pet", "background"] = "pet",
        val_fraction: float = 0.2,
        n_test: int | None = None,
        download: bool = False,
    ) -> None:
        check_geometry(image_size)
        check_fraction("val_fraction", val_fraction)
        if n_test is not None:
            check_range("n_test", n_test, low=1)
        self.root = Path(root).expanduser()
        if not download and not self.root.is_dir():
            raise ParamError("root", f"data folder {str(self.root)!r} does not exist (resolved: "
                                     f"{self.root.resolve()}); put Oxford-IIIT Pet there ({LAYOUT}; "
                                     f"from {URL}), set dataset.download = true, or point "
                                     f"dataset.root (or --data-root) at it")
        self.size = image_size
        self.center_crop = center_crop
        self.target = target
        self.boundary = boundary
        self.val_fraction = val_fraction
        self.n_test = n_test
        self.download = download

    @property
    def has_masks(self) -> bool:
        return True

    @property
    def image_size(self) -> tuple[int, int]:
        return (self.size, self.size)

    @property
    def class_names(self) -> tuple[str, ...]:
        return BREEDS if self.target == "breed" else SPECIES

    def base(self) -> Path:
        """The oxford-iiit-pet folder, downloaded first when asked and missing."""
        for base in (self.root / "oxford-iiit-pet", self.root):
            if (base / "annotations").is_dir() and (base / "images").is_dir():
                return base
        if self.download:
            from torchvision.datasets import OxfordIIITPet

            try:
                OxfordIIITPet(str(self.root), split="trainval", download=True)
            except Exception as exc:  # network errors come in many types
                raise DataError(f"could not download Oxford-IIIT Pet into {self.root / 'oxford-iiit-pet'} "
                                f"({type(exc).__name__}: {exc}); download images.tar.gz and "
                                f"annotations.tar.gz from {URL} and extract both there") from None
            return self.root / "oxford-iiit-pet"
        raise DataError(f"Oxford-IIIT Pet not found in {self.root}: expected {LAYOUT}. Download "
                        f"images.tar.gz and annotations.tar.gz from {URL} and extract both into "
                        f"{self.root / 'oxford-iiit-pet'}, or set dataset.download = true")

    def read_index(self) -> Index:
        """Every image of the official trainval and test lists (before any subsampling)."""
        base = self.base()
        records = read_list(base, "trainval", self.target) + read_list(base, "test", self.target)
        return Index(root=base, records=tuple(records), class_names=self.class_names,
                     sources=(base / "annotations" / "trainval.txt", base / "annotations" / "test.txt"))

    def fingerprint(self) -> str:
        return content_fingerprint(self.read_index())

    def load(self, *, cache_dir: Path, seed: int) -> Splits:
        """Read the official lists, split off validation (seeded, stratified), decode; cached."""
        base = self.base()
        trainval = read_list(base, "trainval", self.target)
        test = read_list(base, "test", self.target)
        n_val = held_out(len(trainval), self.val_fraction)
        train_idx, val_idx, _ = stratified_split([r.label for r in trainval], n_test=0, n_val=n_val,
                                                 seed=seed)
        test_idx = list(range(len(test)))
        if self.n_test is not None and self.n_test < len(test):
            _, _, test_idx = stratified_split([r.label for r in test], n_test=self.n_test, n_val=0,
                                              seed=seed)
        records = trainval + [test[i] for i in test_idx]
        offset = len(trainval)
        plan = (train_idx, val_idx, list(range(offset, len(records))))
        index = Index(root=base, records=tuple(records), class_names=self.class_names,
                      sources=(base / "annotations" / "trainval.txt", base / "annotations" / "test.txt"))
        return load_index(index, plan, name="oxford_pets",
                          path=self.cache_file(cache_dir, seed, content_fingerprint(index)),
                          size=self.size, center_crop=self.center_crop,
                          read_mask=trimap_reader(self.boundary))
