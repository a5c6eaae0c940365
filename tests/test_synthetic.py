import torch

from xaibench.datasets.synthetic import DISTRACTORS, Synthetic, generate

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
