import numpy as np
import pytest
import torch

from xaibench.datasets.synthetic import DISTRACTORS, Synthetic, circumradius_box, generate

KW = dict(size=48, radius=(4, 8), n_shapes=(2, 5), max_targets=2, simplified=False)


def test_deterministic_from_seed():
    a = generate(12, seed=[3, 0], variant="colour", **KW)
    b = generate(12, seed=[3, 0], variant="colour", **KW)
    c = generate(12, seed=[4, 0], variant="colour", **KW)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])


def test_labels_balanced_and_masks_consistent():
    images, labels, obj, box = generate(40, seed=[0, 0], variant="colour", **KW)
    assert images.shape == (40, 3, 48, 48) and images.dtype == torch.uint8
    assert labels.sum() == 20
    neg = labels == 0
    assert not obj[neg].any() and not box[neg].any()  # negatives: empty masks
    assert obj[~neg].flatten(1).any(1).all()  # positives: a target in every one
    assert (obj <= box).all()  # object mask inside the box mask


def test_target_pixels_lie_inside_masks():
    images, labels, obj, box = generate(40, seed=[1, 0], variant="colour", **KW)
    r, g, b = images[:, 0].int(), images[:, 1].int(), images[:, 2].int()
    green = (g > r + 50) & (g > b + 50)  # the colour variant draws targets in green
    assert green[labels == 1].flatten(1).any(1).all()
    assert not green[labels == 0].any()
    assert (green <= obj).all() and (green <= box).all()


def test_nocolour_has_no_colour():
    images, *_ = generate(10, seed=[0, 0], variant="nocolour", **KW)
    assert torch.equal(images[:, 0], images[:, 1]) and torch.equal(images[:, 1], images[:, 2])


def test_no_compound_star_polygons():
    import math
    assert all(math.gcd(p, q) == 1 and p >= 4 for p, q in DISTRACTORS)


def test_splits_cached(tmp_path):
    ds = Synthetic(image_size=32, n_train=8, n_val=4, n_test=4, radius=(3, 6), n_shapes=(1, 3))
    s1 = ds.load(cache_dir=tmp_path, seed=0)
    files = list(tmp_path.iterdir())
    assert len(files) == 1
    s2 = ds.load(cache_dir=tmp_path, seed=0)
    assert torch.equal(s1.test.images, s2.test.images)
    assert (len(s1.train), len(s1.val), len(s1.test)) == (8, 4, 4)
    assert s1.class_names == ("no triangle", "triangle") and s1.has_masks
    images, labels, masks = s1.test.batch(slice(0, 4))
    assert images.dtype == torch.float32 and images.max() <= 1 and masks.dtype == torch.bool
    # different splits are different images
    assert not torch.equal(s1.train.images[:4], s1.test.images)


def test_corrupt_cache_is_regenerated(tmp_path):
    ds = Synthetic(image_size=32, n_train=4, n_val=2, n_test=2, radius=(3, 6), n_shapes=(1, 3))
    s1 = ds.load(cache_dir=tmp_path, seed=0)
    (path,) = tmp_path.iterdir()
    blob = bytearray(path.read_bytes())
    blob[-10] ^= 0xFF
    path.write_bytes(bytes(blob))
    s2 = ds.load(cache_dir=tmp_path, seed=0)
    assert torch.equal(s1.test.images, s2.test.images)


def test_object_mask_option(tmp_path):
    kw = dict(image_size=32, n_train=4, n_val=2, n_test=6, radius=(3, 6), n_shapes=(1, 3))
    box = Synthetic(**kw).load(cache_dir=tmp_path, seed=0).test.masks
    obj = Synthetic(mask="object", **kw).load(cache_dir=tmp_path, seed=0).test.masks
    assert (obj <= box).all() and obj.sum() < box.sum()


def test_circumradius_box_by_hand():
    box = circumradius_box((5.0, 3.0), 2.0, 8)  # columns 3..7, rows 1..5
    want = np.zeros((8, 8), bool)
    want[1:6, 3:8] = True
    assert (box == want).all()
    clipped = circumradius_box((6.3, 0.9), 2.0, 8)  # columns 4..7 (|j - 6.3| < 2.5), rows 0..3
    want = np.zeros((8, 8), bool)
    want[0:4, 4:8] = True
    assert (clipped == want).all()


@pytest.mark.parametrize("simplified", [False, True])
def test_circumradius_box_holds_the_tight_box(simplified):
    kw = {**KW, "simplified": simplified}
    images, labels, obj, tight = generate(30, seed=[2, 0], variant="colour", **kw)
    images2, labels2, obj2, circ = generate(30, seed=[2, 0], variant="colour", box="circumradius", **kw)
    assert torch.equal(images, images2) and torch.equal(labels, labels2) and torch.equal(obj, obj2)
    assert not circ[labels == 0].any()
    # the rasterised outline can stick out of the 2r square by one pixel at a vertex
    grown = torch.nn.functional.max_pool2d(circ[:, None].float(), 3, stride=1, padding=1)[:, 0].bool()
    assert (obj <= grown).all() and (obj & ~circ).sum() < 0.01 * obj.sum()
    assert circ.sum() > tight.sum()  # the 2r square is larger than the triangle's bounding box


def test_box_option(tmp_path):
    kw = dict(image_size=32, n_train=4, n_val=4, n_test=4, radius=(3, 6))
    tight = Synthetic(**kw).load(cache_dir=tmp_path, seed=0)
    circ = Synthetic(**kw, box="circumradius").load(cache_dir=tmp_path, seed=0)
    assert torch.equal(tight.test.images, circ.test.images)
    assert (tight.test.masks <= circ.test.masks).all() and not torch.equal(tight.test.masks, circ.test.masks)
