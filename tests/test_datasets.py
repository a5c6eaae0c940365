"""The on-disk dataset loaders, each on a tiny dataset written here in its real format."""

from __future__ import annotations

import importlib.util
import math
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from xaibench.datasets import files
from xaibench.datasets.files import box_mask, resize_pair
from xaibench.datasets.folder import Folder
from xaibench.datasets.ilsvrc import ILSVRC
from xaibench.datasets.imagenet_hvz import ImagenetHVZ
from xaibench.datasets.nih_cervix import NIHCervix
from xaibench.datasets.oxford_pets import BREEDS, OxfordPets
from xaibench.datasets.splitting import allocate, grouped_split, stratified_split
from xaibench.errors import DataError
from xaibench.io import load_checked
from xaibench.plugins import ParamError

from .datafiles import (
    ILSVRC_LABELS,
    SYNSETS,
    H,
    W,
    box_of,
    voc_xml,
    write_folder,
    write_ilsvrc,
    write_ilsvrc_files,
    write_imagenet_hvz,
    write_nih_cervix,
    write_oxford_pets,
)

S = 32  # loaded image side


def sure_inside_outside(box, *, size=S, width=W, height=H, margin=1.6):
    """Output pixels certainly inside / outside a stored box after the stretch resize: the
    antialiased bilinear kernel reaches 1.5 stored pixels when shrinking 48 -> 32."""
    x0, y0, x1, y1 = box
    cx = (np.arange(size) + 0.5) * width / size
    cy = (np.arange(size) + 0.5) * height / size
    in_x, in_y = (cx > x0 + margin) & (cx < x1 - margin), (cy > y0 + margin) & (cy < y1 - margin)
    out_x, out_y = (cx < x0 - margin) | (cx > x1 + margin), (cy < y0 - margin) | (cy > y1 + margin)
    inside = torch.from_numpy(np.outer(in_y, in_x))
    outside = torch.from_numpy(out_y[:, None] | out_x[None, :])
    return inside, outside


def check_box(mask, box):
    inside, outside = sure_inside_outside(box)
    assert inside.any() and outside.any()
    assert mask[inside].all(), "box pixels missing from the mask"
    assert not mask[outside].any(), "mask pixels outside the box"


def cached_files(cache: Path, name: str) -> dict[str, list[str]]:
    (path,) = cache.glob(f"{name}-*.pt")
    data = load_checked(path)
    return {part: data[part]["files"] for part in ("train", "val", "test")}


def all_splits(splits):
    return {"train": splits.train, "val": splits.val, "test": splits.test}


# -- splitting -------------------------------------------------------------------------------


def test_allocate_is_exact_and_proportional():
    assert allocate([10, 10], 4) == [2, 2]
    assert allocate([3, 1], 2) == [2, 0]  # quotas 1.5, 0.5: the tie goes to the earlier stratum
    assert allocate([5, 5, 5], 3) == [1, 1, 1]
    assert allocate([324, 345], 100) == [48, 52]  # ImagenetHVZ's 100 test images
    assert allocate([4, 2], 0) == [0, 0]
    with pytest.raises(ValueError):
        allocate([1, 1], 3)


def test_stratified_split_sizes_stratification_determinism():
    strata = [0] * 30 + [1] * 15 + [2] * 5
    train, val, test = stratified_split(strata, n_test=10, n_val=8, seed=3)
    assert (len(train), len(val), len(test)) == (32, 8, 10)
    assert sorted(train + val + test) == list(range(50))
    assert Counter(strata[i] for i in test) == {0: 6, 1: 3, 2: 1}
    for part in (train, val):
        for c, n in Counter(strata[i] for i in part).items():
            assert abs(n - len(part) * strata.count(c) / 50) <= 1.5
    assert stratified_split(strata, n_test=10, n_val=8, seed=3) == (train, val, test)
    assert stratified_split(strata, n_test=10, n_val=8, seed=4) != (train, val, test)


def test_grouped_split_keeps_groups_together():
    groups = [f"p{k // 3}" for k in range(60)]  # 20 patients of 3 images
    labels = [int(k // 3 % 4 == 0) for k in range(60)]
    parts = grouped_split(labels, groups, test_fraction=0.2, val_fraction=0.25, seed=0, what="t")
    seen = [{groups[i] for i in p} for p in parts]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
    assert [len(s) for s in seen] == [12, 4, 4]  # ceil(0.2 * 20) = 4, ceil(0.25 * 16) = 4
    assert sum(labels[i] for i in parts[2]) == 3  # one positive patient of five, 3 images
    with pytest.raises(DataError, match="too few"):
        grouped_split([0, 1], ["a", "b"], test_fraction=0.2, val_fraction=0.2, seed=0, what="two")


# -- geometry -------------------------------------------------------------------------------


def test_resize_pair_moves_image_and_mask_together_without_transposing():
    box = (6, 4, 30, 22)
    mask = torch.from_numpy(box_mask([box], W, H))
    assert mask.shape == (H, W) and mask.sum() == 24 * 18
    image = (mask[None].repeat(3, 1, 1) * 255).to(torch.uint8)
    out, out_mask = resize_pair(image, mask, size=S, center_crop=False)
    assert out.shape == (3, S, S) and out.dtype == torch.uint8 and out_mask.dtype == torch.bool
    check_box(out_mask, box)
    assert torch.equal(out[0] >= 128, out_mask)  # the image went through the same transform
    # center crop: shorter side (H = 40) to 32, scale 0.8, width 38 cropped by 3 each side
    out, out_mask = resize_pair(image, mask, size=S, center_crop=True)
    cols = out_mask.any(0).nonzero().flatten()
    rows = out_mask.any(1).nonzero().flatten()
    assert rows.min() == round(4 * 0.8) and rows.max() == round(22 * 0.8) - 1
    assert cols.min() == round(6 * 0.8) - 3 and cols.max() == round(30 * 0.8) - 3 - 1
    assert torch.equal(out[0] >= 128, out_mask)


def test_box_mask_uses_pixel_centres():
    m = box_mask([(1, 2, 3, 4), (0.4, 0, 0.6, 1)], 5, 5)
    assert m[2:4, 1:3].all() and m.sum() == 4 + 1 and m[0, 0] == 1


# -- imagenet_hvz ---------------------------------------------------------------------------


@pytest.fixture
def hvz(tmp_path):
    root = tmp_path / "hvz"
    return root, write_imagenet_hvz(root)


def test_imagenet_hvz_labels_masks_splits(hvz, tmp_path):
    root, truth = hvz
    ds = ImagenetHVZ(root=str(root), image_size=S, n_test=4)
    assert ds.has_masks and ds.image_size == (S, S)
    splits = ds.load(cache_dir=tmp_path / "cache", seed=0)
    assert splits.class_names == ("horse", "zebra") and splits.fingerprint
    sizes = {k: len(v) for k, v in all_splits(splits).items()}
    assert sizes == {"train": 6, "val": 2, "test": 4}  # val = ceil(0.2 * 8)
    names = cached_files(tmp_path / "cache", "imagenet_hvz")
    assert sorted(sum(names.values(), [])) == sorted(f"images/{lab}/{i}" for i, (lab, _) in truth.items())
    for part, split in all_splits(splits).items():
        assert split.images.shape[1:] == (3, S, S) and split.masks.shape[1:] == (S, S)
        assert Counter(split.labels.tolist()) == {0: sizes[part] // 2, 1: sizes[part] // 2}
        for k, name in enumerate(names[part]):
            label, box = truth[Path(name).name]
            assert split.labels[k] == ("horse", "zebra").index(label) and name.startswith(f"images/{label}/")
            check_box(split.masks[k], box)
            centre = split.images[k, :, split.masks[k]].float().mean(1)
            assert (centre[2] > 180) == (label == "zebra")  # the box's colour came along


def test_imagenet_hvz_is_deterministic_and_cached(hvz, tmp_path, monkeypatch):
    root, _ = hvz
    ds = ImagenetHVZ(root=str(root), image_size=S, n_test=4)
    a = ds.load(cache_dir=tmp_path / "c1", seed=0)
    b = ds.load(cache_dir=tmp_path / "c2", seed=0)
    for x, y in zip(all_splits(a).values(), all_splits(b).values()):
        assert torch.equal(x.images, y.images) and torch.equal(x.masks, y.masks)
        assert torch.equal(x.labels, y.labels)
    tests = set()
    for seed in range(4):
        ds.load(cache_dir=tmp_path / f"s{seed}", seed=seed)
        tests.add(tuple(cached_files(tmp_path / f"s{seed}", "imagenet_hvz")["test"]))
    assert len(tests) > 1  # the seed draws the split

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(files, "read_pixels", no_decoding)
    c = ds.load(cache_dir=tmp_path / "c1", seed=0)  # second run: from the cache
    assert torch.equal(c.test.images, a.test.images) and c.fingerprint == a.fingerprint
    image = next((root / "images" / "horse").iterdir())
    Image.new("RGB", (W, H), (255, 0, 0)).save(image, "JPEG")  # changed data: decoded again
    with pytest.raises(AssertionError, match="decoded again"):
        ds.load(cache_dir=tmp_path / "c1", seed=0)
    with pytest.raises(AssertionError, match="decoded again"):  # another size is another cache
        ImagenetHVZ(root=str(root), image_size=S + 8, n_test=4).load(cache_dir=tmp_path / "c2", seed=0)


def hvz_error(root, tmp_path, match):
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=match) as err:
        ImagenetHVZ(root=str(root), image_size=S, n_test=4).load(cache_dir=cache, seed=0)
    assert not cache.exists() or not any(cache.iterdir())  # nothing half-written
    return str(err.value)


def test_imagenet_hvz_bad_data(hvz, tmp_path):
    root, truth = hvz
    horse = root / "images" / "horse" / "n02389026_101.JPEG"
    zebra_mask = root / "masks" / "zebra" / "n02391049_102_mask.JPEG"
    good_horse, good_mask = horse.read_bytes(), zebra_mask.read_bytes()
    good_csv = (root / "data.csv").read_text()

    horse.unlink()
    msg = hvz_error(root, tmp_path, "missing image")
    assert str(horse) in msg and "data.csv line 3" in msg
    horse.write_bytes(b"this is not a JPEG at all")
    assert str(horse) in hvz_error(root, tmp_path, "cannot read image")
    horse.write_bytes(good_horse[: len(good_horse) * 6 // 10])
    assert str(horse) in hvz_error(root, tmp_path, "cannot decode image .*truncated")
    horse.write_bytes(good_horse)

    Image.new("RGB", (W - 8, H), "white").save(zebra_mask, "JPEG")
    msg = hvz_error(root, tmp_path, "mask .* is 40x40 .* but its image .* is 48x40")
    assert str(zebra_mask) in msg and "n02391049_102.JPEG" in msg
    zebra_mask.unlink()
    assert str(zebra_mask) in hvz_error(root, tmp_path, "missing mask")
    zebra_mask.write_bytes(good_mask)

    (root / "data.csv").write_text(good_csv + "n02389026_999.JPEG,donkey\n")
    hvz_error(root, tmp_path, r"data.csv line 14: label 'donkey' of n02389026_999.JPEG is not in the "
                              r"class list \(horse, zebra\)")
    (root / "data.csv").write_text("image,class\nn02389026_100.JPEG,horse\n")
    hvz_error(root, tmp_path, "missing column.* imageID, label")
    (root / "data.csv").write_text(good_csv + "n02389026_100.JPEG,horse\n")
    hvz_error(root, tmp_path, "listed twice")
    (root / "data.csv").write_bytes(good_csv.encode() + "n02389026_\xe9.JPEG,horse\n".encode("latin-1"))
    hvz_error(root, tmp_path, "data.csv is not UTF-8 text")
    (root / "data.csv").unlink()
    hvz_error(root, tmp_path, "data.csv not found")


def test_imagenet_hvz_missing_root_and_too_few(tmp_path):
    with pytest.raises(ParamError, match=r"root: data folder '.*nowhere' does not exist.*dataset.root"):
        ImagenetHVZ(root=str(tmp_path / "nowhere"))
    root = tmp_path / "hvz"
    write_imagenet_hvz(root, per_class=2)
    with pytest.raises(DataError, match="4 images in .*data.csv: too few"):
        ImagenetHVZ(root=str(root), image_size=S).load(cache_dir=tmp_path / "c", seed=0)  # n_test 100


# -- nih_cervix -----------------------------------------------------------------------------


def nih_load(root, tmp_path, **kw):
    ds = NIHCervix(root=str(root), image_size=S, **{"test_fraction": 0.2, **kw})
    return ds.load(cache_dir=tmp_path / "cache", seed=0)


def test_nih_cervix_labels_masks_patient_split(tmp_path):
    root = tmp_path / "nih"
    truth = write_nih_cervix(root)
    splits = nih_load(root, tmp_path)
    assert splits.class_names == ("healthy", "cancer")
    names = cached_files(tmp_path / "cache", "nih_cervix")
    assert sorted(Path(n).stem for n in sum(names.values(), [])) == sorted(truth)  # unknown rows skipped
    patients = {}
    for part, split in all_splits(splits).items():
        for k, name in enumerate(names[part]):
            patient, label, box = truth[Path(name).stem]
            assert split.labels[k] == label
            check_box(split.masks[k], box)
            patients.setdefault(patient, set()).add(part)
    assert all(len(parts) == 1 for parts in patients.values()), patients  # no patient in two splits
    per_split = Counter(next(iter(p)) for p in patients.values())
    assert per_split == {"test": 3, "val": 3, "train": 8}  # ceil(0.2 * 14), ceil(0.2 * 11) patients
    worst = {p: max(lab for q, lab, _ in truth.values() if q == p) for p in patients}
    test_worst = Counter(worst[p] for p, parts in patients.items() if parts == {"test"})
    assert test_worst == {0: 2, 1: 1}  # patients: 7 healthy, 7 cancer -> 1.5 / 1.5 of 3
    again = nih_load(root, tmp_path / "again")
    assert torch.equal(again.test.images, splits.test.images)


def test_nih_cervix_xls_reads_like_csv(tmp_path):
    pytest.importorskip("xlwt")
    pytest.importorskip("python_calamine")
    write_nih_cervix(tmp_path / "csv")
    write_nih_cervix(tmp_path / "xls", fmt="xls")
    a = nih_load(tmp_path / "csv", tmp_path / "a")
    b = nih_load(tmp_path / "xls", tmp_path / "b")
    for x, y in zip(all_splits(a).values(), all_splits(b).values()):
        assert torch.equal(x.images, y.images) and torch.equal(x.labels, y.labels)


def test_nih_cervix_without_masks_and_collection_folders(tmp_path):
    root = tmp_path / "nih"
    write_nih_cervix(root)
    shutil.move(root / "data", tmp_path / "flat")  # <root>/<collection>/ without data/
    ds = NIHCervix(root=str(tmp_path / "flat"), masks=False, collections=("ALTS", "CVT", "NHS"),
                   test_fraction=0.2, image_size=S)
    assert not ds.has_masks
    splits = ds.load(cache_dir=tmp_path / "cache", seed=0)
    assert splits.test.masks is None and len(splits.train) + len(splits.val) + len(splits.test) == 17


def test_nih_cervix_bad_data(tmp_path, monkeypatch):
    root = tmp_path / "nih"
    write_nih_cervix(root)
    sheet = root / "data" / "CVT" / "covariate_data.csv"
    good = sheet.read_text()
    sheet.write_text(good + "P99,CVT9999.tif,3,-1,abc,.\n")
    with pytest.raises(DataError, match=r"CVT/covariate_data.csv row 11: WRST_HIST_AFTER 'abc' is not "
                                        r"a histology code"):
        nih_load(root, tmp_path)
    sheet.write_text(good.replace("GG_PATIENT_ID", "PATIENT"))
    with pytest.raises(DataError, match=r"CVT/covariate_data.csv row 5: missing column\(s\) GG_PATIENT_ID"):
        nih_load(root, tmp_path)
    sheet.write_text(good)
    image = root / "data" / "NHS" / "NHS0019.jpg"
    image.unlink()
    with pytest.raises(DataError, match=f"missing image {image} .*NHS/covariate_data.csv row 7"):
        nih_load(root, tmp_path)
    with pytest.raises(DataError, match="collection folder .*Colposcopy not found"):
        nih_load(root, tmp_path, collections=("ALTS", "Colposcopy"))
    sheet.unlink()
    xls = sheet.with_suffix(".xls")
    xls.write_bytes(b"\xd0\xcf\x11\xe0")
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None if name in (
        "python_calamine", "xlrd", "openpyxl") else find_spec(name, *args))
    with pytest.raises(DataError, match=r"covariate_data.xls needs a spreadsheet engine.*pip install "
                                        r"python-calamine.*libreoffice --headless --convert-to csv"):
        nih_load(root, tmp_path)
    assert not (tmp_path / "cache").exists()


# -- oxford_pets ----------------------------------------------------------------------------


@pytest.fixture
def pets(tmp_path):
    return tmp_path / "pets", write_oxford_pets(tmp_path / "pets")


def test_oxford_pets_species_breeds_and_trimaps(pets, tmp_path):
    root, truth = pets
    splits = OxfordPets(root=str(root), image_size=S).load(cache_dir=tmp_path / "c", seed=0)
    assert splits.class_names == ("cat", "dog")
    names = cached_files(tmp_path / "c", "oxford_pets")
    assert {Path(n).stem for n in names["test"]} == {i for i in truth if int(i.rsplit("_", 1)[1]) >= 100}
    assert (len(splits.train), len(splits.val), len(splits.test)) == (14, 4, 12)  # ceil(0.2 * 18)
    assert Counter(splits.val.labels.tolist()) == {0: 2, 1: 2}
    for part, split in all_splits(splits).items():
        for k, name in enumerate(names[part]):
            class_id, species, box = truth[Path(name).stem]
            assert split.labels[k] == species - 1
            check_box(split.masks[k], box)  # boundary band counts as pet
    breeds = OxfordPets(root=str(root / "oxford-iiit-pet"), image_size=S, target="breed",
                        boundary="background").load(cache_dir=tmp_path / "c", seed=0)
    assert breeds.class_names == BREEDS and len(BREEDS) == 37
    for k, name in enumerate(names["test"]):
        class_id, _, box = truth[Path(name).stem]
        assert breeds.test.labels[k] == class_id - 1
        x0, y0, x1, y1 = box
        check_box(breeds.test.masks[k], (x0 + 2, y0 + 2, x1 - 2, y1 - 2))  # band excluded
    assert breeds.test.masks.sum() < splits.test.masks.sum()


def test_oxford_pets_test_subset_is_stratified(pets, tmp_path):
    root, _ = pets
    splits = OxfordPets(root=str(root), image_size=S, n_test=4).load(cache_dir=tmp_path / "c", seed=0)
    assert len(splits.test) == 4 and Counter(splits.test.labels.tolist()) == {0: 2, 1: 2}


def test_oxford_pets_missing_data_and_download(tmp_path, monkeypatch):
    with pytest.raises(ParamError, match=r"root: data folder .* does not exist.*robots.ox.ac.uk.*download"):
        OxfordPets(root=str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"Oxford-IIIT Pet not found in .*empty: expected oxford-iiit-pet/"
                                        r"images/\*.jpg.*images.tar.gz and annotations.tar.gz"):
        OxfordPets(root=str(tmp_path / "empty")).load(cache_dir=tmp_path / "c", seed=0)

    import torchvision.datasets

    def offline(root, split, download):
        assert download and split == "trainval"
        raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.datasets, "OxfordIIITPet", offline)
    ds = OxfordPets(root=str(tmp_path / "new"), download=True)  # a missing root is fine here
    with pytest.raises(DataError, match=r"could not download Oxford-IIIT Pet into .*new/oxford-iiit-pet "
                                        r"\(OSError: network is unreachable\)"):
        ds.load(cache_dir=tmp_path / "c", seed=0)


def test_oxford_pets_bad_data(pets, tmp_path):
    root, _ = pets
    listing = root / "oxford-iiit-pet" / "annotations" / "trainval.txt"
    good = listing.read_text()
    load = lambda: OxfordPets(root=str(root), image_size=S).load(cache_dir=tmp_path / "c", seed=0)  # noqa: E731
    listing.write_text(good + "Abyssinian_77 40 1 1\n")
    with pytest.raises(DataError, match=r"trainval.txt line 19: class 40 of Abyssinian_77 is not in the "
                                        r"class list"):
        load()
    listing.write_text(good + "Abyssinian_77 5 1 1\n")
    with pytest.raises(DataError, match=r"listed as class 5 \(Beagle\) and species 1 \(cat\), which "
                                        r"disagree"):
        load()
    listing.write_text(good + "Abyssinian_77 1 3 1\n")
    with pytest.raises(DataError, match="species 3 of Abyssinian_77 is not in the class list"):
        load()
    listing.write_text(good)
    trimap = root / "oxford-iiit-pet" / "annotations" / "trimaps" / "pug_2.png"
    Image.fromarray(np.full((H, W), 7, np.uint8)).save(trimap)
    with pytest.raises(DataError, match=f"trimap {trimap} holds value"):
        load()
    Image.fromarray(np.full((H - 1, W), 2, np.uint8)).save(trimap)
    with pytest.raises(DataError, match=f"mask {trimap} is 48x39"):
        load()
    assert not (tmp_path / "c").exists()


# -- folder ---------------------------------------------------------------------------------


@pytest.mark.parametrize("masks", ["none", "files", "boxes"])
def test_folder_labels_masks_splits(tmp_path, masks):
    root = tmp_path / "mine"
    truth = write_folder(root, masks=masks, suffix=".jpg" if masks == "boxes" else ".png")
    ds = Folder(root=str(root), image_size=S, masks=masks)
    assert ds.has_masks == (masks != "none")
    splits = ds.load(cache_dir=tmp_path / "c", seed=0)
    assert splits.class_names == ("bird", "cat", "dog")  # sorted folder names
    assert (len(splits.train), len(splits.val), len(splits.test)) == (9, 3, 3)
    names = cached_files(tmp_path / "c", "folder")
    for part, split in all_splits(splits).items():
        assert Counter(split.labels.tolist()) == {0: len(split) // 3, 1: len(split) // 3, 2: len(split) // 3}
        assert (split.masks is None) == (masks == "none")
        for k, name in enumerate(names[part]):
            c, box = truth[name.removeprefix("images/")]
            assert split.labels[k] == splits.class_names.index(c)
            if masks != "none":
                check_box(split.masks[k], box)


def test_folder_class_order_masks_beside_images_and_several_boxes(tmp_path):
    root = tmp_path / "mine"
    write_folder(root, classes={"dog": 3, "cat": 3}, masks="boxes")
    with (root / "boxes.csv").open("a") as f:
        f.write("images/dog/dog_00.png,30,25,40,35\n")  # a second box, path given with images/
    splits = Folder(root=str(root), image_size=S, masks="boxes", classes=("dog", "cat"),
                    test_fraction=0.3, val_fraction=0.25).load(cache_dir=tmp_path / "c", seed=0)
    assert splits.class_names == ("dog", "cat")
    names = cached_files(tmp_path / "c", "folder")
    every = {n: (s, k) for s, ns in names.items() for k, n in enumerate(ns)}
    part, k = every["images/dog/dog_00.png"]
    mask = all_splits(splits)[part].masks[k]
    check_box(mask & torch.from_numpy(np.outer(np.arange(S) < 18, np.ones(S, bool))), box_of(0))
    assert mask[26, 25] and not mask[26, 15]
    for name, (part, k) in every.items():
        assert all_splits(splits)[part].labels[k] == (0 if "/dog/" in name else 1)

    beside = tmp_path / "beside"
    truth = write_folder(beside, classes={"a": 3, "b": 3}, masks="files")
    for path in (beside / "masks").rglob("*.png"):
        path.rename(beside / "images" / path.parent.name / path.name)
    splits = Folder(root=str(beside), image_size=S, masks="files", mask_dir="images",
                    test_fraction=0.3, val_fraction=0.25).load(cache_dir=tmp_path / "c2", seed=0)
    assert len(splits.train) + len(splits.val) + len(splits.test) == 6  # masks are not images
    names = cached_files(tmp_path / "c2", "folder")
    for k, name in enumerate(names["test"]):
        check_box(splits.test.masks[k], truth[name.removeprefix("images/")][1])


def folder_error(root, tmp_path, match, **kw):
    with pytest.raises(DataError, match=match) as err:
        Folder(root=str(root), image_size=S, **kw).load(cache_dir=tmp_path / "c", seed=0)
    assert not (tmp_path / "c").exists()
    return str(err.value)


def test_folder_bad_data(tmp_path):
    root = tmp_path / "mine"
    write_folder(root, masks="files")
    (root / "images" / "fish").mkdir()
    (root / "images" / "fish" / "notes.txt").write_text("no images here")
    folder_error(root, tmp_path, f"empty class folder {root / 'images' / 'fish'}: no image files")
    folder_error(root, tmp_path, f"class folder {root / 'images' / 'fish'} is not in the class list "
                                 f"\\(bird, cat, dog\\)", classes=("bird", "cat", "dog"))
    shutil.rmtree(root / "images" / "fish")
    folder_error(root, tmp_path, "class 'fish' of dataset.classes has no folder",
                 classes=("bird", "cat", "dog", "fish"))
    mask = root / "masks" / "cat" / "cat_01_mask.png"
    mask.unlink()
    msg = folder_error(root, tmp_path, "missing mask for image .*cat_01.png", masks="files")
    assert str(mask) in msg
    Image.new("L", (W, H + 2)).save(mask)
    folder_error(root, tmp_path, f"mask {mask} is 48x42", masks="files")
    (root / "images" / "cat" / "cat_02.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    folder_error(root, tmp_path, "cannot read image .*cat_02.png")
    (root / "images" / "cat" / "cat_02.png").unlink()
    (root / "boxes.csv").write_text("file,x0,y0,x1,y1\ncat/cat_03.png,10,10,60,20\n")
    folder_error(root, tmp_path, r"boxes.csv line 2: box \(10, 10, 60, 20\) does not fit the 48x40 image",
                 masks="boxes")
    (root / "boxes.csv").write_text("file,x0,y0,x1,y1\ncat/nope.png,1,1,2,2\n")
    folder_error(root, tmp_path, r"boxes.csv line 2: 'cat/nope.png' is not an image", masks="boxes")
    (root / "boxes.csv").write_text("file,x0,y0,x1,y1\ncat/cat_03.png,1,one,2,2\n")
    folder_error(root, tmp_path, "box corners must be numbers", masks="boxes")
    shutil.rmtree(root / "images")
    folder_error(root, tmp_path, "images not found")


# -- ilsvrc -----------------------------------------------------------------------------------


WNIDS = tuple(w for w, _ in SYNSETS)


def check_boxes(mask, boxes):
    """Every box's sure interior is in the mask; what is surely outside every box is not."""
    outside = torch.ones(S, S, dtype=torch.bool)
    for box in boxes:
        inside, out = sure_inside_outside(box)
        assert mask[inside].all(), f"box {box} pixels missing from the mask"
        outside &= out
    assert not mask[outside].any(), "mask pixels outside the boxes"


def ilsvrc(root, tmp_path, **kw):
    params = {"image_size": S, "center_crop": False, **kw}
    return ILSVRC(root=str(root), **params).load(cache_dir=tmp_path / "cache", seed=0)


@pytest.mark.parametrize("fmt", ["xml", "csv"])
def test_ilsvrc_labels_are_mapping_lines_and_masks_the_class_boxes(tmp_path, fmt):
    root = tmp_path / "ilsvrc"
    truth = write_ilsvrc(root, fmt=fmt)
    ds = ILSVRC(root=str(root), image_size=S, center_crop=False, annotations=fmt)
    assert ds.has_masks and ds.image_size == (S, S) and not ds.trainable
    splits = ds.load(cache_dir=tmp_path / "cache", seed=0)
    assert splits.class_names == WNIDS and splits.num_classes == 5
    assert len(splits.train) == len(splits.val) == 0 and len(splits.test) == 12  # evaluation only
    assert splits.train.images.shape == (0, 3, S, S) and splits.train.masks.shape == (0, S, S)
    names = cached_files(tmp_path / "cache", "ilsvrc")["test"]
    assert names == [f"val/ILSVRC2012_val_{k:08d}.JPEG" for k in range(1, 13)]
    assert splits.test.labels.tolist() == list(ILSVRC_LABELS)  # n01491361 is line 4: class 3
    for k, name in enumerate(names):
        label, boxes = truth[Path(name).stem]
        assert splits.test.labels[k] == label
        check_boxes(splits.test.masks[k], boxes)
        centre = splits.test.images[k, :, splits.test.masks[k]].float().mean(1)
        assert centre[1] > 200  # the box's colour came along
    mask = splits.test.masks[1]  # image 2: its two class boxes, not the other synset's box
    assert mask[2, 26] and not mask[S * 32 // H, S * 37 // W]
    mask = splits.test.masks[2]  # image 3: the box reaching the edges, clipped
    assert mask[-1, -1] and not mask[0, 0]


def test_ilsvrc_xml_and_csv_read_alike_and_masks_can_be_off(tmp_path):
    write_ilsvrc(tmp_path / "both")
    a = ilsvrc(tmp_path / "both", tmp_path / "a", annotations="xml")
    b = ilsvrc(tmp_path / "both", tmp_path / "b", annotations="csv")
    assert torch.equal(a.test.images, b.test.images) and torch.equal(a.test.masks, b.test.masks)
    assert torch.equal(a.test.labels, b.test.labels)
    c = ilsvrc(tmp_path / "both", tmp_path / "c", masks=False)
    assert c.test.masks is None and torch.equal(c.test.images, a.test.images)


def test_ilsvrc_box_corners_are_inclusive_pixel_indices(tmp_path):
    """No resize (48 x 48 stored, image_size 48): the mask is exactly columns xmin..xmax and rows
    ymin..ymax."""
    root = tmp_path / "ilsvrc"
    image = Image.new("RGB", (48, 48), (10, 10, 10))
    write_ilsvrc_files(root, {"ILSVRC2012_val_00000001": (image, [("n01443537", (5, 7, 20, 30))])})
    splits = ilsvrc(root, tmp_path, image_size=48)
    expected = torch.zeros(48, 48, dtype=torch.bool)
    expected[7:31, 5:21] = True
    assert torch.equal(splits.test.masks[0], expected) and splits.test.labels.tolist() == [1]


def test_ilsvrc_mask_geometry_after_resize_and_centre_crop(tmp_path):
    """A 96 x 64 (W x H) image, image_size 16, crop_fraction 0.5: the shorter side goes to
    16 / 0.5 = 32 (scale 1/2, 48 x 32), then the centre 16 x 16 is kept: columns 16..31 and rows
    8..23 of the resized image. The box columns 40..55, rows 20..35 (inclusive) is columns
    20..27, rows 10..17 resized, so columns 4..11 and rows 2..9 of the output. At a boundary the
    antialiased 2x kernel puts 0.875 of the weight inside (in) or 0.125 (out): exact."""
    root = tmp_path / "ilsvrc"
    pixels = np.zeros((64, 96, 3), np.uint8)
    pixels[20:36, 40:56] = 255
    write_ilsvrc_files(root, {"ILSVRC2012_val_00000007": (Image.fromarray(pixels),
                                                         [("n01494475", (40, 20, 55, 35))])}, fmt="xml")
    ds = ILSVRC(root=str(root), image_size=16, center_crop=True, crop_fraction=0.5)
    splits = ds.load(cache_dir=tmp_path / "cache", seed=0)
    expected = torch.zeros(16, 16, dtype=torch.bool)
    expected[2:10, 4:12] = True
    assert torch.equal(splits.test.masks[0], expected)
    assert torch.equal(splits.test.images[0, 0] >= 128, expected)  # the image took the same path
    assert splits.test.labels.tolist() == [4]
    default = ILSVRC(root=str(root), image_size=16).load(cache_dir=tmp_path / "cache", seed=0)
    rows, cols = default.test.masks[0].any(1).nonzero(), default.test.masks[0].any(0).nonzero()
    # crop_fraction 0.875: 64 -> 18 (scale 0.28125), 96 -> 27; crop offsets (1, 6 = round(5.5))
    assert rows.min() == round(20 * 0.28125) - 1 and cols.min() == round(40 * 0.28125) - 6


def test_ilsvrc_class_subset_relabel_sample_and_split(tmp_path):
    root = tmp_path / "ilsvrc"
    write_ilsvrc(root, fmt="xml")
    sub = ilsvrc(root, tmp_path / "a", classes=("n01494475", "n01440764"))
    assert sub.class_names == WNIDS  # a pretrained 1000-way model still sees every class
    assert sorted(sub.test.labels.tolist()) == [0, 0, 0, 4, 4]
    relabelled = ilsvrc(root, tmp_path / "b", classes=("n01494475", "n01440764"), relabel=True)
    assert relabelled.class_names == ("n01494475", "n01440764")
    assert torch.equal(relabelled.test.labels, (sub.test.labels == 0).long())  # 4 -> 0, 0 -> 1
    sample = ilsvrc(root, tmp_path / "c", n_images=5)
    assert len(sample.test) == 5 and len(set(sample.test.labels.tolist())) == 5  # one per class
    samples = set()
    for seed in range(3):
        ILSVRC(root=str(root), image_size=S, n_images=5).load(cache_dir=tmp_path / f"s{seed}", seed=seed)
        samples.add(tuple(cached_files(tmp_path / f"s{seed}", "ilsvrc")["test"]))
    assert len(samples) > 1  # the seed draws the sample
    ds = ILSVRC(root=str(root), image_size=S, center_crop=False, test_fraction=0.5, val_fraction=0.5)
    assert ds.trainable
    split = ds.load(cache_dir=tmp_path / "d", seed=0)
    assert (len(split.train), len(split.val), len(split.test)) == (3, 3, 6)


def ilsvrc_error(root, tmp_path, match, **kw):
    with pytest.raises(DataError, match=match) as err:
        ilsvrc(root, tmp_path, **kw)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())
    return str(err.value)


def test_ilsvrc_bad_data(tmp_path):
    root = tmp_path / "ilsvrc"
    write_ilsvrc(root)
    mapping = root / "LOC_synset_mapping.txt"
    good_mapping = mapping.read_text()
    mapping.write_text(good_mapping + "tench n01440764\n")
    ilsvrc_error(root, tmp_path, r"LOC_synset_mapping.txt line 6: expected '<synset> <description>'")
    mapping.write_text(good_mapping + "n01440764 tench again\n")
    ilsvrc_error(root, tmp_path, "line 6: synset n01440764 is listed twice \\(also line 1\\)")
    mapping.unlink()
    ilsvrc_error(root, tmp_path, f"synset mapping {mapping} not found.*dataset.synsets_file")
    mapping.write_text(good_mapping)
    ilsvrc_error(root, tmp_path, "class 'n09999999' of dataset.classes is not in the synset mapping",
                 classes=("n09999999",))
    ilsvrc_error(root, tmp_path, "image folder .*nowhere not found.*ILSVRC/Data/CLS-LOC/val",
                 images_dir="nowhere")

    xml = root / "val" / "ILSVRC2012_val_00000004.xml"
    good_xml = xml.read_text()
    xml.write_text(good_xml[:200])
    assert str(xml) in ilsvrc_error(root, tmp_path, "cannot parse annotation")
    xml.write_text(good_xml.replace("n01443537", "n09999999"))
    ilsvrc_error(root, tmp_path, f"{xml} object 1: synset 'n09999999' is not in the synset mapping")
    xml.write_text(voc_xml("ILSVRC2012_val_00000004", (W, H), []))
    ilsvrc_error(root, tmp_path, f"{xml} has no <object>")
    xml.write_text(good_xml.replace("<ymax>", "<ymaximum>").replace("</ymax>", "</ymaximum>"))
    ilsvrc_error(root, tmp_path, "object 1: needs <bndbox> with <xmin>, <ymin>, <xmax> and <ymax>")
    xml.write_text(good_xml.replace("<xmax>", "<xmax>-").replace("<xmin>", "<xmin>99"))
    ilsvrc_error(root, tmp_path, "object 1: box .* has its maximum below its minimum")
    xml.unlink()
    ilsvrc_error(root, tmp_path, f"missing annotation {xml}: annotations = 'xml' needs one <stem>.xml")
    xml.write_text(good_xml)

    table = root / "LOC_val_solution.csv"
    good_table = table.read_text()
    table.write_text(good_table.replace("ILSVRC2012_val_00000005,", "ILSVRC2012_val_00000099,"))
    ilsvrc_error(root, tmp_path, "image .*ILSVRC2012_val_00000005.JPEG has no row in .*LOC_val_solution.csv",
                 annotations="csv")
    table.write_text(good_table + "ILSVRC2012_val_00000005,n01440764 1 2 3\n")
    ilsvrc_error(root, tmp_path, "LOC_val_solution.csv line 14: ILSVRC2012_val_00000005 is listed twice",
                 annotations="csv")
    table.write_text("ImageId,PredictionString\nILSVRC2012_val_00000005,n01440764 1 2 3\n")
    ilsvrc_error(root, tmp_path, "line 2: the PredictionString of ILSVRC2012_val_00000005 must be groups "
                                 "of 'synset xmin ymin xmax ymax', got 4 field", annotations="csv")
    table.write_text("ImageId,PredictionString\nILSVRC2012_val_00000005,n01440764 1 2 x 4\n")
    ilsvrc_error(root, tmp_path, "line 2: box corners must be numbers", annotations="csv")
    table.write_text("ImageId,Label\n")
    ilsvrc_error(root, tmp_path, "missing column.* PredictionString", annotations="csv")
    table.unlink()
    ilsvrc_error(root, tmp_path, f"box file {table} not found.*annotations = 'xml'", annotations="csv")

    image = root / "val" / "ILSVRC2012_val_00000003.JPEG"
    image.write_bytes(image.read_bytes()[:300])
    assert str(image) in ilsvrc_error(root, tmp_path, "cannot (read|decode) image")
    image.write_bytes(b"not a JPEG")
    assert str(image) in ilsvrc_error(root, tmp_path, "cannot read image")
    for path in (root / "val").glob("*.JPEG"):
        path.unlink()
    ilsvrc_error(root, tmp_path, "no images in .*val: expected ILSVRC2012_val_\\*.JPEG")


def test_ilsvrc_parameters_are_checked_at_config_time(tmp_path):
    with pytest.raises(ParamError, match="relabel: needs the classes"):
        ILSVRC(root=str(tmp_path), relabel=True)
    with pytest.raises(ParamError, match="classes: 'tench' is not a synset id"):
        ILSVRC(root=str(tmp_path), classes=("tench",))
    with pytest.raises(ParamError, match=r"crop_fraction: must be in \(0, 1\]"):
        ILSVRC(root=str(tmp_path), crop_fraction=0.0)
    with pytest.raises(ParamError, match=r"test_fraction: must be in \(0, 1\] \(1: every image"):
        ILSVRC(root=str(tmp_path), test_fraction=0.0)
    with pytest.raises(ParamError, match="n_images"):
        ILSVRC(root=str(tmp_path), n_images=-1)
    with pytest.raises(ParamError, match="root: data folder"):
        ILSVRC(root=str(tmp_path / "nowhere"))


def test_parameters_are_checked_at_config_time(tmp_path):
    with pytest.raises(ParamError, match="image_size"):
        Folder(root=str(tmp_path), image_size=8)
    with pytest.raises(ParamError, match="test_fraction: must be in \\(0, 1\\)"):
        Folder(root=str(tmp_path), test_fraction=1.0)
    with pytest.raises(ParamError, match="mask_suffix"):
        Folder(root=str(tmp_path), masks="files", mask_dir="images", mask_suffix="")
    with pytest.raises(ParamError, match="collections"):
        NIHCervix(root=str(tmp_path), collections=())
    assert math.isclose(NIHCervix(root=str(tmp_path)).test_fraction, 0.05)


ILSVRC_RUN = """
[run]
seed = 0
device = "cpu"
batch_size = 4
bootstrap = 100

[dataset]
name = "ilsvrc"
root = "{root}"
image_size = 32
test_fraction = {test_fraction}
val_fraction = 0.5

[models.resnet18]
arch = "resnet18"
epochs = 1
batch_size = 4
{checkpoint}

[methods.gradcam]

[methods.saliency]

[metrics.relevance_mass]
"""


@pytest.mark.slow
def test_ilsvrc_run_evaluates_a_checkpoint_with_empty_train_and_val(tmp_path):
    """Through the CLI: train a checkpoint on a split of the fixture, then evaluate it on the
    evaluation-only default (every image a test image, train and val empty): nothing is trained
    and the leaderboard has the checkpoint's accuracy on all 12 images."""
    import subprocess
    import sys

    import pandas as pd

    root = tmp_path / "ilsvrc"
    write_ilsvrc(root)

    def run(name, **fields):
        path = tmp_path / f"{name}.toml"
        path.write_text(ILSVRC_RUN.format(root=root, **fields))
        proc = subprocess.run([sys.executable, "-m", "xaibench.cli", "run", str(path), "--out",
                               str(tmp_path / name), "--no-progress"], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        return tmp_path / name / "ilsvrc"

    trained = run("train", test_fraction=0.5, checkpoint="")
    (ckpt,) = (trained / "cache" / "models").glob("resnet18-*.pt")
    out = run("evaluate", test_fraction=1.0, checkpoint=f'checkpoint = "{ckpt}"')
    assert not list((out / "cache").glob("models/*.pt"))  # evaluated, not trained
    (folder,) = out.glob("evaluate-*")
    board = pd.read_csv(folder / "leaderboard.csv").set_index("method")
    assert set(board.index) == {"gradcam", "saliency"} and (board["n"] == 12).all()
    scores = pd.read_csv(folder / "scores.csv")
    assert sorted(scores["index"].unique()) == list(range(12))
    labels = scores.drop_duplicates("index").sort_values("index")["label"].tolist()
    assert labels == list(ILSVRC_LABELS)  # the synset mapping's class indices
