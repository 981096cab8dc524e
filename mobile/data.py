"""Data: a seeded synthetic data set, ImageFolder, the few transforms we need, and the loader.

Images are float32 CHW tensors in [0, 1] (RGB, no mean/std normalization). Every transform
takes ``(img, index)`` and draws randomness only from a ``torch.Generator`` seeded from
``(seed, epoch, index)``, so results do not depend on worker count or iteration order.

Synthetic data set (``SyntheticImages``; no files, generated on the fly)
    Item ``i`` of a split is generated from its own generator seeded by ``(seed, split, i)``
    (train and val use different split ids); its label is ``i % num_classes`` (balanced).
    Class ``c`` has a coarse attribute, a base colour (``c % n_colours`` of red, green, blue,
    yellow, magenta; ``n_colours = ceil(num_classes / 2)``), and a fine attribute, stripe
    orientation (``c // n_colours``: horizontal, vertical), so every class count from 2 to 10
    uses both orientations; for 10 classes that is colour ``c % 5``, orientation ``c // 5``.
    A ``size`` x ``size`` image (default 64) is the sum of
      * the base colour, jittered by U(-0.08, 0.08) per channel;
      * the class cue: a grey sinusoidal grating over the whole image with the class's
        orientation, random phase, amplitude U(0.15, 0.35), period U(2, 6) native pixels;
      * a Gaussian bump of random colour (per channel U(-0.2, 0.2)), position and sigma
        (U(size/10, size/3));
      * grey low-frequency streaks of random orientation, independent of the class: a 1-D
        Gaussian-smoothed (sigma 1.5 px) noise profile, rms 0.15, extended across the image;
      * Gaussian pixel noise, sigma 0.04;
    clamped to [0, 1]. Antialiased downsampling attenuates a grating whose period falls
    below ~2 output pixels (to <= 40 %, and ~0 near 1 pixel) and aliases what is left to low
    frequencies, where the streaks mask it; without the streaks the faint residue would stay
    detectable against white noise. So the orientation cue fades as resolution drops while the
    colour survives: a finite-difference orientation detector is right for ~100 % of images
    at 64 px, ~97 % at 48, ~92 % at 40 and ~78 % at 32 (see tests).

Unreadable images: skip and count. ``ImageFolder.__getitem__`` catches decode errors, warns
``skipping unreadable image <path>: <error>`` and returns None; ``collate_skip_bad`` drops
such items and returns how many it dropped with each batch.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, SequentialSampler


class DataError(ValueError):
    """Bad user data; the message names the path or field and what was expected."""


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")

_MASK64 = (1 << 64) - 1


def _seed(*parts: int) -> int:
    """Mix integers into one 63-bit generator seed (splitmix64-style, stable across runs)."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = ((h ^ (int(p) & _MASK64)) * 0xBF58476D1CE4E5B9) & _MASK64
        h ^= h >> 31
        h = (h * 0x94D049BB133111EB) & _MASK64
        h ^= h >> 29
    return h & ((1 << 63) - 1)


def _generator(*parts: int) -> torch.Generator:
    return torch.Generator().manual_seed(_seed(*parts))


def _uniform(g: torch.Generator, low: float, high: float) -> float:
    return float(torch.empty(()).uniform_(low, high, generator=g))


# --------------------------------------------------------------------------- transforms


def resize(img: Tensor, size: int | tuple[int, int]) -> Tensor:
    """Bilinear antialiased resize; an int sets the shorter side, keeping the aspect ratio."""
    h, w = img.shape[-2:]
    if isinstance(size, int):
        short, long = (h, w) if h <= w else (w, h)
        new_long = int(size * long / short)
        size = (size, new_long) if h <= w else (new_long, size)
    if tuple(size) == (h, w):
        return img
    out = F.interpolate(img.unsqueeze(0), size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
    return out.squeeze(0)


def center_crop(img: Tensor, size: int | tuple[int, int]) -> Tensor:
    """Crop the central ``size`` x ``size`` (or ``(h, w)``) region."""
    th, tw = (size, size) if isinstance(size, int) else size
    h, w = img.shape[-2:]
    if th > h or tw > w:
        raise ValueError(f"center_crop: crop {th}x{tw} is larger than the image {h}x{w}")
    top, left = (h - th) // 2, (w - tw) // 2
    return img[..., top : top + th, left : left + tw]


def _rrc_params(h: int, w: int, g: torch.Generator, scale, ratio) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop.get_params: (top, left, height, width)."""
    area = h * w
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * _uniform(g, scale[0], scale[1])
        aspect = math.exp(_uniform(g, log_ratio[0], log_ratio[1]))
        cw = int(round(math.sqrt(target_area * aspect)))
        ch = int(round(math.sqrt(target_area / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(torch.randint(0, h - ch + 1, (1,), generator=g))
            left = int(torch.randint(0, w - cw + 1, (1,), generator=g))
            return top, left, ch, cw
    in_ratio = w / h  # fallback: whole-image centre crop with the ratio clamped
    if in_ratio < min(ratio):
        cw, ch = w, int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        ch, cw = h, int(round(h * max(ratio)))
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def random_resized_crop(
    img: Tensor, size: int, generator: torch.Generator, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)
) -> Tensor:
    """Crop a random area/aspect region (torchvision's algorithm) and resize it to size x size."""
    top, left, ch, cw = _rrc_params(img.shape[-2], img.shape[-1], generator, scale, ratio)
    return resize(img[..., top : top + ch, left : left + cw], (size, size))


def hflip(img: Tensor) -> Tensor:
    """Mirror left-right."""
    return img.flip(-1)


class TrainTransform:
    """RandomResizedCrop(size, scale=(min_crop, 1)) + horizontal flip (p=0.5, unless `flip=False`),
    deterministic in (seed, epoch, index)."""

    def __init__(self, size: int, seed: int = 0, min_crop: float = 0.08, flip: bool = True):
        if not 0 < min_crop <= 1:
            raise ValueError(f"min_crop: expected a fraction of the image area in (0, 1], got {min_crop!r}")
        self.size, self.seed, self.min_crop, self.flip, self.epoch = size, seed, min_crop, flip, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __call__(self, img: Tensor, index: int) -> Tensor:
        g = _generator(self.seed, self.epoch, index)
        out = random_resized_crop(img, self.size, g, scale=(self.min_crop, 1.0))
        if float(torch.rand((), generator=g)) < 0.5 and self.flip:
            out = hflip(out)
        return out.contiguous()

    def __repr__(self) -> str:
        return f"TrainTransform(size={self.size}, seed={self.seed}, min_crop={self.min_crop}, flip={self.flip})"


class EvalTransform:
    """Resize the shorter side to round(size / crop_ratio), then center-crop size x size."""

    def __init__(self, size: int, crop_ratio: float = 0.875):
        self.size, self.crop_ratio = size, crop_ratio

    def __call__(self, img: Tensor, index: int) -> Tensor:
        return center_crop(resize(img, round(self.size / self.crop_ratio)), self.size).contiguous()

    def __repr__(self) -> str:
        return f"EvalTransform(size={self.size}, crop_ratio={self.crop_ratio})"


# --------------------------------------------------------------------------- datasets

_COLOURS = {
    "red": (0.70, 0.30, 0.30),
    "green": (0.30, 0.70, 0.30),
    "blue": (0.30, 0.30, 0.70),
    "yellow": (0.70, 0.70, 0.30),
    "magenta": (0.70, 0.30, 0.70),
}
_ORIENTATIONS = ("horizontal", "vertical")
_STREAK_SIGMA = 1.5  # native pixels: the streak distractor holds periods >~ 6 px
_SYNTHETIC_SPLITS = {"train": (1, 4000), "val": (2, 1000)}  # split -> (seed offset, default length)


def _oriented(profile: Tensor, orientation: int) -> Tensor:
    """Extend a 1-D profile to a square: 0 = horizontal stripes (varies along y), 1 = vertical."""
    s = profile.shape[0]
    return profile[:, None].expand(s, s) if orientation == 0 else profile[None, :].expand(s, s)


class _EpochMixin:
    transform = None

    def set_epoch(self, epoch: int) -> None:
        """Forward the epoch to the transform (if it has set_epoch)."""
        if hasattr(self.transform, "set_epoch"):
            self.transform.set_epoch(epoch)


class SyntheticImages(_EpochMixin, Dataset):
    """Seeded colour x stripe-orientation images, generated on the fly (see module docstring)."""

    def __init__(
        self,
        split: str = "train",
        num_classes: int = 10,
        size: int = 64,
        length: int | None = None,
        seed: int = 0,
        transform=None,
    ):
        if split not in _SYNTHETIC_SPLITS:
            raise DataError(f"synthetic split {split!r} is not one of {sorted(_SYNTHETIC_SPLITS)}")
        if not 2 <= num_classes <= 10:
            raise DataError(f"num_classes={num_classes}: the synthetic data set supports 2 to 10 classes")
        if size < 8:
            raise DataError(f"synthetic size={size}: expected at least 8 pixels")
        if length is not None and length < 0:
            raise DataError(f"synthetic length={length}: expected a count >= 0")
        offset, default_length = _SYNTHETIC_SPLITS[split]
        self.split, self.num_classes, self.size, self.seed = split, num_classes, size, seed
        self.length = default_length if length is None else length
        self.transform = transform
        self._split_id = offset
        self._n_colours = math.ceil(num_classes / 2)
        names = list(_COLOURS)
        self.classes = [
            f"{names[c % self._n_colours]}-{_ORIENTATIONS[c // self._n_colours]}" for c in range(num_classes)
        ]
        self._colours = [_COLOURS[n] for n in names]
        self._coords = torch.arange(size, dtype=torch.float32) + 0.5
        freqs = torch.arange(size // 2 + 1, dtype=torch.float32) / size  # cycles per pixel
        self._streak_envelope = torch.exp(-0.5 * (2 * math.pi * freqs * _STREAK_SIGMA) ** 2)
        self._streak_envelope[0] = 0.0

    def __len__(self) -> int:
        return self.length

    def generate(self, index: int) -> tuple[Tensor, int]:
        """The native (untransformed) image and label of item ``index``."""
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} items")
        g = _generator(self.seed, self._split_id, index)
        label = index % self.num_classes
        colour_id, orientation = label % self._n_colours, label // self._n_colours
        s, xs = self.size, self._coords
        u = torch.rand(13, generator=g).tolist()
        # class cue: fine grating with the class's orientation
        amplitude, period, phase = 0.15 + 0.2 * u[3], 2.0 + 4.0 * u[4], 2 * math.pi * u[5]
        wave = torch.sin(xs * (2 * math.pi / period) + phase).mul_(amplitude)
        # distractor: low-frequency streaks of random orientation, rms 0.15
        spectrum = torch.view_as_complex(torch.randn(s // 2 + 1, 2, generator=g)) * self._streak_envelope
        streak = torch.fft.irfft(spectrum, n=s)
        streak *= 0.15 / max(float(streak.square().mean()) ** 0.5, 1e-6)
        grey = _oriented(wave, orientation) + _oriented(streak, int(u[12] < 0.5))
        # distractor: Gaussian bump of random colour, position and sigma
        cy, cx, sigma = u[9] * s, u[10] * s, s / 10 + u[11] * (s / 3 - s / 10)
        bump = torch.outer(
            torch.exp((xs - cy).square_().mul_(-0.5 / sigma**2)), torch.exp((xs - cx).square_().mul_(-0.5 / sigma**2))
        )
        colour = [c + (2 * j - 1) * 0.08 for c, j in zip(self._colours[colour_id], u[0:3])]
        bump_colour = [(2 * j - 1) * 0.2 for j in u[6:9]]
        img = torch.randn(3, s, s, generator=g).mul_(0.04)
        for ch in range(3):
            img[ch].add_(grey).add_(bump, alpha=bump_colour[ch]).add_(colour[ch])
        return img.clamp_(0.0, 1.0), label

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        img, label = self.generate(index)
        if self.transform is not None:
            img = self.transform(img, index)
        return img, label


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    )


def _class_dirs(split_dir: Path) -> list[str]:
    return sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def check_class_names(found: list[str], expected: list[str], where: str) -> None:
    """A short ValueError (counts and the first difference, not both lists) when a data set's classes are not the
    model's, in label order."""
    found, expected = list(found), list(expected)
    if found == expected:
        return
    i = next((i for i, (a, b) in enumerate(zip(found, expected)) if a != b), min(len(found), len(expected)))
    first = (f"label {i} is folder {found[i][:60]!r} but class {expected[i][:60]!r}"
             if i < min(len(found), len(expected)) else f"they agree up to label {i}")
    hint = ""
    if all(n.isdigit() for n in expected):
        hint = (f"; the model's classes are numbered {expected[0]}…{expected[-1]} (as `resflex import` names them "
                f"without --classes/--data): name the class folders so, zero-padded so that they sort in label "
                f"order, or re-import with --classes FILE / --data FOLDER giving the names in label order")
    raise ValueError(f"{where}: {len(found)} class folders do not match the model's {len(expected)} classes "
                     f"({first}){hint}")


def load_image(path: str | Path) -> Tensor:
    """Read an image file as RGB float32 CHW in [0, 1]."""
    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB"))
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).float().div_(255.0)


class ImageFolder(_EpochMixin, Dataset):
    """Images in ``root/split/<class>/<image>``; classes are the sorted class folder names."""

    def __init__(self, root: str | Path, split: str, transform=None):
        root = Path(root)
        if not root.is_dir():
            raise DataError(
                f"data path {root} does not exist or is not a folder; expected a folder with "
                "`train/` and `val/` subfolders of class folders, or source 'synthetic'"
            )
        split_dir = root / split
        if not split_dir.is_dir():
            raise DataError(
                f"split folder {split_dir} not found: expected `train/` and `val/` subfolders "
                f"of class folders under {root}"
            )
        classes = _class_dirs(split_dir)
        if not classes:
            raise DataError(f"{split_dir} has no class folders; expected {split_dir}/<class>/<image>")
        samples: list[tuple[str, int]] = []
        for label, name in enumerate(classes):
            files = _image_files(split_dir / name)
            if not files:
                raise DataError(
                    f"class folder {split_dir / name} has no image files "
                    f"(expected one of {', '.join(IMAGE_EXTENSIONS)})"
                )
            samples += [(str(p), label) for p in files]
        self.root, self.split, self.transform = root, split, transform
        self.classes, self.samples = classes, samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, int] | None:
        path, label = self.samples[index]
        try:
            img = load_image(path)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
            warnings.warn(f"skipping unreadable image {path}: {err}", stacklevel=2)
            return None
        if self.transform is not None:
            img = self.transform(img, index)
        return img, label


FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist package
FASHION_MNIST_FILES = {"train": "train", "val": "t10k"}  # split -> IDX file prefix
FASHION_MNIST_CLASSES = ["0_tshirt_top", "1_trouser", "2_pullover", "3_dress", "4_coat", "5_sandal", "6_shirt",
                         "7_sneaker", "8_bag", "9_ankle_boot"]  # label order (prefixed so sorting keeps it)


def read_idx(path: Path, ndim: int, limit: int | None = None) -> np.ndarray:
    """An IDX file (gzip or plain) of unsigned bytes with `ndim` dimensions as a uint8 array, at most `limit`
    items read; DataError naming the file and the field otherwise."""
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            header = f.read(4 + 4 * ndim)
            if len(header) < 4 + 4 * ndim:
                raise DataError(f"{path}: header: expected {4 + 4 * ndim} bytes, got {len(header)}")
            if header[:2] != b"\0\0" or header[2] != 0x08 or header[3] != ndim:
                raise DataError(f"{path}: magic: expected 00 00 08 {ndim:02x} (unsigned bytes, {ndim} dimensions), "
                                f"got {header[:4].hex(' ')}")
            dims = [int.from_bytes(header[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
            if any(d < 1 for d in dims[1:]) or math.prod(dims[1:]) > 4096 * 4096:
                raise DataError(f"{path}: item dimensions {dims[1:]}: expected positive sizes of at most 4096²")
            count = dims[0] if limit is None else min(dims[0], limit)
            item = math.prod(dims[1:])
            data = f.read(count * item)
    except (OSError, EOFError) as err:
        raise DataError(f"{path}: cannot read the IDX file ({err}); Fashion-MNIST comes with Debian's "
                        "dataset-fashion-mnist package (apt-get install dataset-fashion-mnist)") from None
    if len(data) < count * item:
        raise DataError(f"{path}: truncated: the header promises {dims[0]} items of {item} bytes, "
                        f"the file holds {len(data) // item}")
    return np.frombuffer(data, dtype=np.uint8).reshape(count, *dims[1:])


class FashionMNIST(_EpochMixin, Dataset):
    """Fashion-MNIST (Zalando; 60,000 train + 10,000 test 28×28 grey images, 10 classes) read from the IDX
    files of `root`; the test set serves as val. `length` keeps the first `length` images of the split (the
    files are already in random order). Images are grey repeated to RGB, like an ImageFolder's PNGs."""

    def __init__(self, split: str, transform=None, length: int | None = None, root: str | Path = FASHION_MNIST_DIR):
        if split not in FASHION_MNIST_FILES:
            raise DataError(f"fashion-mnist: split {split!r}: expected one of {', '.join(FASHION_MNIST_FILES)}")
        prefix = Path(root) / FASHION_MNIST_FILES[split]
        images = read_idx(Path(f"{prefix}-images-idx3-ubyte.gz"), 3, length)
        labels = read_idx(Path(f"{prefix}-labels-idx1-ubyte.gz"), 1, length)
        if len(labels) != len(images):
            raise DataError(f"{prefix}-labels-idx1-ubyte.gz: {len(labels)} labels for {len(images)} images; "
                            "expected one label per image")
        if labels.size and labels.max() >= len(FASHION_MNIST_CLASSES):
            raise DataError(f"{prefix}-labels-idx1-ubyte.gz: label {int(labels.max())}: expected 0…9")
        self.images, self.labels = torch.from_numpy(images.copy()), labels.astype(np.int64).tolist()
        self.classes, self.split, self.transform = list(FASHION_MNIST_CLASSES), split, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        img = self.images[index].float().div_(255.0).unsqueeze(0).expand(3, -1, -1).contiguous()
        return (self.transform(img, index) if self.transform is not None else img), self.labels[index]


def build_dataset(
    source: str,
    split: str,
    transform=None,
    *,
    synthetic_size: int = 64,
    num_classes: int = 10,
    seed: int = 0,
    length: int | None = None,
) -> Dataset:
    """``"synthetic"`` -> SyntheticImages; ``"fashion-mnist"`` -> FashionMNIST (Debian's IDX files, the first
    `length` images); anything else is an ImageFolder root (val classes checked against train)."""
    if source == "synthetic":
        return SyntheticImages(split, num_classes, synthetic_size, length, seed, transform)
    if source == "fashion-mnist":
        return FashionMNIST(split, transform, length)
    dataset = ImageFolder(source, split, transform)
    train_dir = Path(source) / "train"
    if split == "val" and train_dir.is_dir():
        train_classes = set(_class_dirs(train_dir))
        val_classes = set(dataset.classes)
        if train_classes != val_classes:
            raise DataError(
                f"class folders of {Path(source) / 'val'} differ from {train_dir}: "
                f"only in val: {sorted(val_classes - train_classes)}, "
                f"only in train: {sorted(train_classes - val_classes)}"
            )
    return dataset


# --------------------------------------------------------------------------- loading


def collate_skip_bad(batch) -> tuple[Tensor, Tensor, int]:
    """Stack (image, label) items, dropping None (unreadable) ones: (images NCHW, labels int64, n_skipped)."""
    good = [item for item in batch if item is not None]
    skipped = len(batch) - len(good)
    if not good:
        return torch.zeros(0, 0, 0, 0), torch.zeros(0, dtype=torch.int64), skipped
    images = torch.stack([img for img, _ in good])
    labels = torch.tensor([label for _, label in good], dtype=torch.int64)
    return images, labels, skipped


def make_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool,
    workers: int = 0,
    seed: int = 0,
    epoch: int = 0,
    drop_last: bool = False,
    distributed: bool | None = None,
) -> DataLoader:
    """A DataLoader whose order and augmentation depend only on (seed, epoch); also calls dataset.set_epoch.

    `distributed`: shard across the process group (default: when one is initialised); False reads all of it.
    """
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    if distributed is None:
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    if distributed:
        sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed)
        sampler.set_epoch(epoch)
    elif shuffle:
        sampler = RandomSampler(dataset, generator=_generator(seed, epoch))
    else:
        sampler = SequentialSampler(dataset)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_skip_bad,
        pin_memory=torch.cuda.is_available(),
        drop_last=drop_last,
        persistent_workers=False,
    )


# --------------------------------------------------------------------------- a small real data set


def write_digits(root: str | Path, size: int = 32, val_every: int = 5) -> Path:
    """Write scikit-learn's 1,797 real 8×8 handwritten digits (no download: they ship with the package) as an
    ImageFolder at `root` (train/ and val/, one folder per digit), each upscaled bilinearly to `size`×`size`
    grey PNG, white ink on black. Every `val_every`-th image of each class goes to val/ (deterministic), the rest
    to train/ (1,442 / 355 images with the default). Returns `root`. A folder that already holds this exact set
    (same size and split, checked by a marker file) is reused; any other non-empty folder is refused."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError("the digits data set needs scikit-learn: pip install scikit-learn") from None
    root = Path(root)
    marker = root / ".resflex-digits"
    stamp = f"sklearn digits size={size} val_every={val_every}\n"
    if marker.is_file() and marker.read_text() == stamp:
        return root
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise DataError(f"{root}: expected an empty or missing folder to write the digits data set into")
    digits = load_digits()
    images = torch.from_numpy(digits.images).float().div_(16.0).unsqueeze(1)  # (N, 1, 8, 8) ink in [0, 1]
    images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False).clamp_(0, 1)
    pixels = images.mul_(255).round_().to(torch.uint8).squeeze(1).numpy()
    tmp = root.with_name(f".{root.name}.tmp")
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    seen: dict[int, int] = {}
    for i, (img, label) in enumerate(zip(pixels, digits.target.tolist())):
        n = seen[label] = seen.get(label, -1) + 1
        split = "val" if n % val_every == val_every - 1 else "train"
        folder = tmp / split / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img, mode="L").save(folder / f"{i:04d}.png")
    (tmp / marker.name).write_text(stamp)
    root.parent.mkdir(parents=True, exist_ok=True)
    if root.exists():
        root.rmdir()
    tmp.rename(root)
    return root
