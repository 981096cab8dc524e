"""Tests for resflex.mobile.data: transforms, synthetic data, ImageFolder, loader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from resflex.mobile.data import (
    IMAGE_EXTENSIONS,
    DataError,
    EvalTransform,
    ImageFolder,
    SyntheticImages,
    TrainTransform,
    build_dataset,
    center_crop,
    collate_skip_bad,
    hflip,
    make_loader,
    random_resized_crop,
    resize,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- transforms


def test_resize_int_sets_shorter_side_and_keeps_aspect():
    assert resize(torch.rand(3, 40, 80), 20).shape == (3, 20, 40)
    assert resize(torch.rand(3, 80, 40), 20).shape == (3, 40, 20)
    assert resize(torch.rand(3, 40, 80), (10, 12)).shape == (3, 10, 12)


def test_resize_antialiases_a_checkerboard_to_grey():
    board = (torch.arange(64)[:, None] + torch.arange(64)[None, :]) % 2
    out = resize(board.float().expand(3, 64, 64), 16)[:, 1:-1, 1:-1]  # borders are renormalised
    assert torch.allclose(out, torch.full_like(out, 0.5), atol=1e-5)


def test_random_resized_crop_size_and_determinism():
    img = torch.rand(3, 50, 70)
    a = random_resized_crop(img, 24, _gen(3))
    b = random_resized_crop(img, 24, _gen(3))
    c = random_resized_crop(img, 24, _gen(4))
    assert a.shape == (3, 24, 24) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_random_resized_crop_whole_square_image_is_plain_resize():
    img = torch.rand(3, 48, 48)
    out = random_resized_crop(img, 32, _gen(), scale=(1.0, 1.0), ratio=(1.0, 1.0))
    assert torch.equal(out, resize(img, (32, 32)))


def test_random_resized_crop_falls_back_to_centre_crop_with_clamped_ratio():
    img = torch.rand(3, 40, 40)
    # ratio 4 never fits a full-area square crop: fallback is the central 40 x 10 band
    out = random_resized_crop(img, 16, _gen(), scale=(1.0, 1.0), ratio=(4.0, 4.0))
    assert torch.equal(out, resize(img[:, 15:25, :], (16, 16)))


def test_hflip():
    img = torch.rand(3, 5, 7)
    assert torch.equal(hflip(img)[..., 0], img[..., -1])
    assert torch.equal(hflip(hflip(img)), img)


def test_center_crop_rejects_a_crop_larger_than_the_image():
    assert center_crop(torch.rand(3, 10, 12), 6).shape == (3, 6, 6)
    with pytest.raises(ValueError, match="larger"):
        center_crop(torch.rand(3, 10, 12), 11)


def test_eval_transform_size_and_centre():
    img = torch.zeros(3, 64, 96)
    img[:, 4:60, 20:76] = 1.0  # exactly the central 56 x 56 crop of a 64-px-short-side image
    out = EvalTransform(56)(img, 0)  # round(56 / 0.875) = 64: no resize, crop only
    assert out.shape == (3, 56, 56)
    assert torch.equal(out, torch.ones(3, 56, 56))
    assert EvalTransform(32)(torch.rand(3, 64, 80), 5).shape == (3, 32, 32)


def test_train_transform_deterministic_in_seed_epoch_index():
    img = torch.rand(3, 64, 64)
    t = TrainTransform(32, seed=7)
    a = t(img, 3)
    assert a.shape == (3, 32, 32)
    assert torch.equal(a, TrainTransform(32, seed=7)(img, 3))  # fresh instance, same result
    assert not torch.equal(a, t(img, 4))  # another index
    assert not torch.equal(a, TrainTransform(32, seed=8)(img, 3))  # another seed
    t.set_epoch(1)
    b = t(img, 3)
    assert not torch.equal(a, b)  # another epoch
    t.set_epoch(0)
    assert torch.equal(a, t(img, 3))


# --------------------------------------------------------------------------- synthetic data


def test_synthetic_shapes_range_and_determinism():
    ds = SyntheticImages("train", length=20)
    img, label = ds[3]
    assert img.shape == (3, 64, 64) and img.dtype == torch.float32
    assert isinstance(label, int)
    assert 0.0 <= img.min() and img.max() <= 1.0
    again, _ = SyntheticImages("train", length=20)[3]
    assert torch.equal(img, again)
    other_seed, _ = SyntheticImages("train", length=20, seed=1)[3]
    assert not torch.equal(img, other_seed)
    assert SyntheticImages("val", size=32, length=5)[0][0].shape == (3, 32, 32)


def test_synthetic_default_lengths_and_train_differs_from_val():
    train, val = SyntheticImages("train"), SyntheticImages("val")
    assert (len(train), len(val)) == (4000, 1000)
    assert not torch.equal(train[0][0], val[0][0])
    assert train[0][1] == val[0][1]  # same label rule, different pixels


def test_synthetic_labels_balanced_and_class_names():
    ds = SyntheticImages(num_classes=10, length=100)
    labels = [ds[i][1] for i in range(len(ds))]
    assert np.bincount(labels).tolist() == [10] * 10
    assert ds.classes[0] == "red-horizontal" and ds.classes[5] == "red-vertical"
    assert len(set(ds.classes)) == 10
    # fewer classes: both orientations are still used
    assert SyntheticImages(num_classes=2).classes == ["red-horizontal", "red-vertical"]
    assert SyntheticImages(num_classes=3).classes == ["red-horizontal", "green-horizontal", "red-vertical"]


@pytest.mark.parametrize("kwargs", [{"num_classes": 1}, {"num_classes": 11}, {"split": "test"}])
def test_synthetic_rejects_bad_arguments(kwargs):
    with pytest.raises(DataError):
        SyntheticImages(**kwargs)


def test_synthetic_calls_transform_with_index_and_forwards_epoch():
    calls = []

    class Recorder:
        epoch = None

        def set_epoch(self, epoch):
            self.epoch = epoch

        def __call__(self, img, index):
            calls.append(index)
            return img[:, :8, :8]

    ds = SyntheticImages(length=10, transform=Recorder())
    assert ds[4][0].shape == (3, 8, 8) and calls == [4]
    ds.set_epoch(3)
    assert ds.transform.epoch == 3


def _orientation_accuracy(items, resolution: int) -> float:
    """Hand-written detector: stripes run along the axis with less finite-difference energy."""
    correct = 0
    for img, label in items:
        grey = resize(img, resolution).mean(0)
        along_y = torch.diff(grey, dim=0).square().mean()  # large for horizontal stripes
        along_x = torch.diff(grey, dim=1).square().mean()
        predicted = 0 if along_y > along_x else 1
        correct += predicted == label // 5
    return correct / len(items)


def test_synthetic_resolution_matters():
    """The documented property: the orientation cue fades with resolution (colour does not)."""
    ds = SyntheticImages("val", length=400)
    items = [ds[i] for i in range(len(ds))]
    acc = {r: _orientation_accuracy(items, r) for r in (64, 48, 32)}
    # measured on these 400 items: 1.000 / 0.965 / 0.765
    assert acc[64] >= 0.97
    assert acc[64] >= acc[48] >= acc[32]
    assert acc[64] - acc[32] >= 0.12


# --------------------------------------------------------------------------- ImageFolder


def _write_png(path, colour):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (12, 10), colour).save(path)


@pytest.fixture
def folder(tmp_path):
    """root/{train,val}/{dog,cat}/img{0,1,2}.png (dog written first to check sorting)."""
    root = tmp_path / "data"
    for split in ("train", "val"):
        for name, colour in (("dog", (255, 0, 0)), ("cat", (0, 0, 255))):
            for i in range(3):
                _write_png(root / split / name / f"img{i}.png", colour)
    return root


def test_image_folder_happy_path(folder):
    (folder / "train" / "cat" / "notes.txt").write_text("not an image")
    ds = ImageFolder(folder, "train")
    assert ds.classes == ["cat", "dog"]
    assert len(ds) == len(ds.samples) == 6
    assert [label for _, label in ds.samples] == [0, 0, 0, 1, 1, 1]
    img, label = ds[0]
    assert img.shape == (3, 10, 12) and img.dtype == torch.float32 and label == 0
    assert torch.equal(img[:, 0, 0], torch.tensor([0.0, 0.0, 1.0]))  # blue cat, scaled to [0, 1]
    assert torch.equal(ds[3][0][:, 0, 0], torch.tensor([1.0, 0.0, 0.0]))


def test_image_folder_extensions_case_insensitive_and_transform(folder):
    _write_png(folder / "train" / "cat" / "upper.PNG", (0, 255, 0))
    ds = ImageFolder(folder, "train", transform=EvalTransform(8))
    assert len(ds) == 7
    assert ds[0][0].shape == (3, 8, 8)
    assert ".png" in IMAGE_EXTENSIONS


def test_build_dataset_dispatches(folder):
    assert isinstance(build_dataset("synthetic", "val", length=3), SyntheticImages)
    assert len(build_dataset("synthetic", "train", synthetic_size=32, num_classes=4, length=7)) == 7
    val = build_dataset(str(folder), "val")
    assert isinstance(val, ImageFolder) and val.classes == ["cat", "dog"]


def test_error_missing_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match="nowhere"):
        build_dataset(str(missing), "train")


def test_error_missing_split(folder):
    import shutil

    shutil.rmtree(folder / "val")
    with pytest.raises(DataError) as err:
        build_dataset(str(folder), "val")
    assert str(folder / "val") in str(err.value)
    assert "`train/` and `val/`" in str(err.value)


def test_error_no_class_folders(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "loose.png").write_bytes(b"")
    with pytest.raises(DataError, match="no class folders") as err:
        build_dataset(str(tmp_path), "train")
    assert str(tmp_path / "train") in str(err.value)


def test_error_empty_class_folder(folder):
    (folder / "train" / "emu").mkdir()
    (folder / "train" / "emu" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match="no image files") as err:
        build_dataset(str(folder), "train")
    assert str(folder / "train" / "emu") in str(err.value)


def test_error_val_classes_differ_from_train(folder):
    _write_png(folder / "val" / "emu" / "a.png", (0, 0, 0))
    with pytest.raises(DataError) as err:
        build_dataset(str(folder), "val")
    message = str(err.value)
    assert "emu" in message and str(folder / "val") in message and str(folder / "train") in message
    assert isinstance(err.value, ValueError)


def test_unreadable_image_is_skipped_with_warning_and_counted(folder):
    bad = folder / "train" / "cat" / "broken.jpg"
    bad.write_bytes(b"this is not a jpeg" * 10)
    ds = ImageFolder(folder, "train")
    index = [p for p, _ in ds.samples].index(str(bad))
    with pytest.warns(UserWarning, match="skipping unreadable image .*broken.jpg"):
        assert ds[index] is None
    with pytest.warns(UserWarning, match="broken.jpg"):
        batches = list(make_loader(ds, 4, shuffle=False))
    assert sum(len(labels) for _, labels, _ in batches) == 6
    assert sum(skipped for _, _, skipped in batches) == 1
    assert all(images.shape[1:] == (3, 10, 12) for images, _, _ in batches)


def test_collate_skip_bad():
    images, labels, skipped = collate_skip_bad([(torch.zeros(3, 2, 2), 1), None, (torch.ones(3, 2, 2), 0)])
    assert images.shape == (2, 3, 2, 2) and labels.tolist() == [1, 0] and labels.dtype == torch.int64
    assert skipped == 1
    images, labels, skipped = collate_skip_bad([None, None])
    assert images.numel() == 0 and labels.numel() == 0 and skipped == 2


# --------------------------------------------------------------------------- loader


class _Indices(torch.utils.data.Dataset):
    def __len__(self):
        return 32

    def __getitem__(self, i):
        return torch.full((1, 1, 1), float(i)), i


def _order(loader) -> list[int]:
    return [i for _, labels, _ in loader for i in labels.tolist()]


def test_make_loader_order_depends_only_on_seed_and_epoch():
    ds = _Indices()
    a = _order(make_loader(ds, 5, shuffle=True, seed=1, epoch=2))
    assert sorted(a) == list(range(32))
    assert a == _order(make_loader(ds, 5, shuffle=True, seed=1, epoch=2))
    assert a != _order(make_loader(ds, 5, shuffle=True, seed=1, epoch=3))
    assert a != _order(make_loader(ds, 5, shuffle=True, seed=2, epoch=2))
    assert _order(make_loader(ds, 5, shuffle=False)) == list(range(32))
    assert len(list(make_loader(ds, 5, shuffle=False, drop_last=True))) == 6


def test_make_loader_sets_epoch_and_workers_do_not_change_results():
    ds = SyntheticImages(length=12, transform=TrainTransform(16, seed=3))
    loader = make_loader(ds, 4, shuffle=True, seed=0, epoch=5)
    assert ds.transform.epoch == 5
    serial = [(x, y) for x, y, _ in loader]
    parallel = [(x, y) for x, y, _ in make_loader(ds, 4, shuffle=True, seed=0, epoch=5, workers=2)]
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(serial, parallel))
    assert len(serial) == len(parallel) == 3


def test_write_digits_is_a_real_imagefolder(digits_folder):
    train_set = build_dataset(str(digits_folder), "train")
    val_set = build_dataset(str(digits_folder), "val")
    assert train_set.classes == [str(d) for d in range(10)] == val_set.classes
    assert (len(train_set), len(val_set)) == (1442, 355)  # every 5th image of each class in val
    img, label = val_set[0]
    assert img.shape == (3, 32, 32) and label == 0
    assert torch.equal(img[0], img[1]) and img.max() > 0.9 and img.min() == 0  # grey, white ink on black


def test_write_digits_reuses_its_own_folder_and_refuses_others(digits_folder, tmp_path):
    from resflex.mobile.data import write_digits

    assert write_digits(digits_folder, size=32) == digits_folder  # same set: reused, not rewritten
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="empty or missing folder"):
        write_digits(other)
    assert (other / "notes.txt").read_text() == "keep me"
    with pytest.raises(DataError, match="empty or missing folder"):
        write_digits(digits_folder, size=16)  # another size never overwrites an existing set


def _write_idx(path, array: np.ndarray, magic: bytes | None = None, gz: bool = True) -> None:
    """An IDX file of unsigned bytes (optionally with a wrong magic) for the Fashion-MNIST reader."""
    import gzip

    header = (magic or bytes([0, 0, 8, array.ndim])) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    (gzip.open if gz else open)(path, "wb").write(header + array.astype(np.uint8).tobytes())


def _fashion_folder(tmp_path, n=6, labels=None):
    for prefix in ("train", "t10k"):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", np.arange(n * 28 * 28).reshape(n, 28, 28) % 256)
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.array(labels or [i % 10 for i in range(n)]))
    return tmp_path


def test_fashion_mnist_reads_idx_files(tmp_path):
    from resflex.mobile.data import FASHION_MNIST_CLASSES, FashionMNIST

    ds = FashionMNIST("val", TrainTransform(16, min_crop=0.5), length=4, root=_fashion_folder(tmp_path))
    img, label = ds[3]
    assert len(ds) == 4 and img.shape == (3, 16, 16) and label == 3 and ds.classes == FASHION_MNIST_CLASSES
    raw = FashionMNIST("train", root=tmp_path)[1][0]
    assert raw.shape == (3, 28, 28) and torch.equal(raw[0], raw[2])
    assert raw[0, 0, 0] == pytest.approx(((28 * 28) % 256) / 255)


@pytest.mark.parametrize("damage, expected", [
    ("magic", "magic: expected 00 00 08 03"),
    ("truncated", "truncated: the header promises 6 items"),
    ("labels", "5 labels for 6 images"),
    ("label_range", "label 12: expected 0…9"),
    ("missing", "apt-get install dataset-fashion-mnist"),
])
def test_fashion_mnist_damaged_files_name_file_and_field(tmp_path, damage, expected):
    from resflex.mobile.data import FashionMNIST

    root = _fashion_folder(tmp_path)
    images, labels = root / "train-images-idx3-ubyte.gz", root / "train-labels-idx1-ubyte.gz"
    if damage == "magic":
        _write_idx(images, np.zeros((6, 28, 28)), magic=bytes([0, 0, 9, 3]))
    elif damage == "truncated":
        _write_idx(images, np.zeros((6, 28, 28)))
        import gzip
        data = gzip.open(images).read()
        gzip.open(images, "wb").write(data[:-100])
    elif damage == "labels":
        _write_idx(labels, np.zeros(5))
    elif damage == "label_range":
        _write_idx(labels, np.array([0, 1, 12, 3, 4, 5]))
    else:
        images.unlink()
    with pytest.raises(DataError, match=expected) as err:
        FashionMNIST("train", root=root)
    assert "train-" in str(err.value)


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_from_debian_package():
    train, val = build_dataset("fashion-mnist", "train", length=100), build_dataset("fashion-mnist", "val")
    assert len(train) == 100 and len(val) == 10_000 and train.classes == val.classes
    assert sorted(set(val.labels)) == list(range(10))
