"""Data: any image dataset -> tensors in [-1, 1] (plus labels when the dataset has them).

The diffusion model never sees PIL images. It sees ``x_0``: a batch of images scaled to [-1, 1], the range the
Gaussian noise of the forward process is measured against (``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps``
only makes "pure noise at t = T" true if x_0 lives on the same scale as eps ~ N(0, I)).

Where the images come from (one of):

    --dataset_name ylecun/mnist                 a Hub id (needs internet the first time; then the HF cache)
    --dataset_name ../shared/data/mnist         a local folder of parquet files (same schema as the Hub)
    --dataset_name path/saved_with_save_to_disk a ``datasets.save_to_disk`` folder
    --train_data_dir path/to/images             a folder of image files (``imagefolder``; sub-folders = labels)
    (none of these)                             the 2,000-digit MNIST subset that ships inside this package

Grayscale stays 1 channel and RGB stays 3 (diffusers' own example forces RGB; a digit does not need 3 copies of
itself). Small datasets (MNIST, CIFAR-10: tens of MB as uint8) are decoded once into one uint8 tensor, so no PIL
work happens per training step; datasets too big for that are decoded per item (``stream``).

    python -c "from sd_course.core.data import load_train_dataset; print(load_train_dataset(resolution=28))"
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import datasets
import torch
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from sd_course.core.errors import InputError

# The offline default: 2,000 real MNIST training digits (200 per class), CC BY-SA 3.0, LeCun, Cortes & Burges.
BUILTIN_DATASETS = {"builtin:mnist-2k": Path(__file__).resolve().parents[1] / "assets" / "mnist-2k"}
DEFAULT_DATASET = "builtin:mnist-2k"

IMAGE_COLUMNS = ("image", "img", "images", "pixel_values")  # tried in this order when --image_column is not given
LABEL_COLUMNS = ("label", "labels", "fine_label", "class")  # kept when present (class conditioning, metrics)
RESIZE_MODES = ("resize", "pad", "center_crop")  # how an image of another size is brought to --resolution
IMAGE_MODES = ("L", "RGB")  # 1 channel or 3 channels
IN_MEMORY_LIMIT_BYTES = 4 * 2**30  # decode once into RAM when the uint8 tensor is smaller than this


# ----------------------------------------------------------------------------------------------------------------
# 1. Find and load the dataset (a `datasets.Dataset`, images still encoded)
# ----------------------------------------------------------------------------------------------------------------


def load_hf_dataset(
    dataset_name: str | None = None,
    train_data_dir: str | None = None,
    split: str = "train",
    dataset_config_name: str | None = None,
    cache_dir: str | None = None,
):
    """Load one split of an image dataset as a ``datasets.Dataset``, from the Hub, a local folder or the package.

    Every failure becomes an :class:`InputError` that says what was tried and what to pass instead.
    """
    if dataset_name and train_data_dir:
        raise InputError("give either --dataset_name or --train_data_dir, not both")
    if train_data_dir is not None:
        if not Path(train_data_dir).is_dir():
            raise InputError(f"--train_data_dir {train_data_dir!r} is not a folder; pass a folder of image files")
        loader = dict(path="imagefolder", data_dir=str(train_data_dir))
    else:
        name = dataset_name or DEFAULT_DATASET
        if name in BUILTIN_DATASETS:
            loader = dict(path=str(BUILTIN_DATASETS[name]))
        elif name.startswith("builtin:"):  # a typo of a bundled name is not a Hub id called "builtin"
            raise InputError(f"no bundled dataset {name!r}; the package bundles {', '.join(BUILTIN_DATASETS)} "
                             "(2,000 MNIST digits); online, pass a Hub id such as ylecun/mnist")
        elif Path(name).expanduser().exists():
            path = Path(name).expanduser()
            if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
                return _select_split(_load_from_disk(path), split, name)
            loader = dict(path=str(path))
        elif name.startswith((".", "/", "~")) or name.count("/") > 1:
            raise InputError(f"dataset path {name!r} does not exist (paths are read relative to {os.getcwd()}); pass "
                             "ylecun/mnist (the Hub, online) or builtin:mnist-2k (2,000 digits bundled, offline)")
        else:
            loader = dict(path=name, name=dataset_config_name)  # a Hub id such as ylecun/mnist
    try:
        loaded = datasets.load_dataset(**loader, cache_dir=cache_dir)
    except Exception as e:  # datasets raises many types (FileNotFoundError, DatasetNotFoundError, ConnectionError...)
        where = loader["path"] if loader["path"] != "imagefolder" else train_data_dir
        raise InputError(
            f"could not load dataset {where!r}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}\n"
            "  Pass a Hub id (e.g. ylecun/mnist, zalando-datasets/fashion_mnist, uoft-cs/cifar10; needs internet or "
            "the HF cache), builtin:mnist-2k (2,000 MNIST digits bundled with the package: works offline), a local "
            "folder of parquet files, a save_to_disk folder, or --train_data_dir for images."
        ) from e
    return _select_split(loaded, split, loader["path"])


def _load_from_disk(path: Path):
    try:
        return datasets.load_from_disk(str(path))
    except Exception as e:
        raise InputError(f"{path} looks like a save_to_disk dataset but could not be read: {e}") from e


def _select_split(loaded, split: str, name: str):
    if isinstance(loaded, datasets.Dataset):
        return loaded
    if split not in loaded:
        raise InputError(f"dataset {name!r} has no split {split!r}; its splits are {sorted(loaded)} (use --split)")
    return loaded[split]


def parse_dataset_spec(spec: str, default_split: str = "test") -> tuple[str, str]:
    """``"ylecun/mnist:test"`` -> ``("ylecun/mnist", "test")``; ``"path/to/data"`` -> ``("path/to/data", default)``."""
    if spec in BUILTIN_DATASETS:
        return spec, default_split
    name, sep, split = spec.rpartition(":")
    if spec.startswith("builtin:") and name not in BUILTIN_DATASETS:
        raise InputError(f"no bundled dataset {spec!r}; the package bundles {', '.join(BUILTIN_DATASETS)} (2,000 "
                         "MNIST digits, split train: builtin:mnist-2k:train); online, pass a Hub id such as "
                         "ylecun/mnist:test")
    if sep and name and "/" not in split and not (len(name) == 1 and name.isalpha()):  # not a "C:\..." drive
        return name, split
    return spec, default_split


def find_image_column(ds, image_column: str | None = None) -> str:
    """The column holding the images: ``--image_column`` if given, else the first of IMAGE_COLUMNS present."""
    columns = ds.column_names
    if image_column is not None:
        if image_column not in columns:
            raise InputError(f"--image_column {image_column!r} is not in the dataset; its columns are {columns}")
        return image_column
    for name in IMAGE_COLUMNS:
        if name in columns:
            return name
    raise InputError(f"no image column found (looked for {list(IMAGE_COLUMNS)}); the dataset has {columns}: "
                     "pass --image_column NAME")


def find_label_column(ds, label_column: str | None = None) -> str | None:
    """The class-label column if there is one (``None`` when the dataset is unlabelled)."""
    if label_column is not None:
        if label_column not in ds.column_names:
            raise InputError(f"--label_column {label_column!r} is not in the dataset; its columns are {ds.column_names}")
        return label_column
    return next((c for c in LABEL_COLUMNS if c in ds.column_names), None)


# ----------------------------------------------------------------------------------------------------------------
# 2. Decode one image: PIL -> uint8 tensor (C, H, W) at the target resolution
# ----------------------------------------------------------------------------------------------------------------


def _open_image(value, index: int) -> Image.Image:
    """Open one cell of an image column (``{"bytes", "path"}`` with decoding off, or a PIL image)."""
    if isinstance(value, Image.Image):
        return value
    where = value.get("path") or f"row {index}"
    try:
        if value.get("bytes") is not None:
            image = Image.open(io.BytesIO(value["bytes"]))
        else:
            image = Image.open(value["path"])
        image.load()
        return image
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise InputError(f"image {where!r} (row {index}) could not be decoded ({e}); remove or replace that file") from e


def channels_of(mode: str) -> int:
    """1 for grayscale-like PIL modes, 3 for colour ones (alpha is dropped)."""
    return 1 if mode in ("1", "L", "LA", "I", "I;16", "F") else 3


def image_to_uint8(image: Image.Image, resolution: int, image_mode: str, resize_mode: str = "resize") -> torch.Tensor:
    """A PIL image -> uint8 tensor ``(C, resolution, resolution)``; C = 1 for mode "L", 3 for "RGB"."""
    image = image.convert(image_mode)
    w, h = image.size
    if resize_mode == "pad":  # keep pixels 1:1, pad with black (MNIST 28 -> 32 as in the original LeNet inputs)
        if w > resolution or h > resolution:
            raise InputError(f"resize_mode 'pad' cannot shrink a {w}x{h} image to {resolution}; use 'resize'")
        canvas = Image.new(image_mode, (resolution, resolution))
        canvas.paste(image, ((resolution - w) // 2, (resolution - h) // 2))
        image = canvas
    elif (w, h) != (resolution, resolution):
        if resize_mode == "resize":  # shorter side to `resolution`, then centre crop (diffusers' example does this)
            scale = resolution / min(w, h)
            image = image.resize((max(resolution, round(w * scale)), max(resolution, round(h * scale))),
                                 Image.BICUBIC)
            w, h = image.size
        left, top = (w - resolution) // 2, (h - resolution) // 2  # centre crop (also `center_crop` mode)
        image = image.crop((left, top, left + resolution, top + resolution))
        if image.size != (resolution, resolution):
            raise InputError(f"a {w}x{h} image is smaller than --resolution {resolution} with resize_mode "
                             f"{resize_mode!r}; use resize_mode 'resize' or 'pad'")
    array = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    return array.view(resolution, resolution, -1).permute(2, 0, 1).contiguous()


def to_model_range(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]: ``x_0 = 2 * (pixel / 255) - 1``."""
    return images_uint8.float().div(127.5).sub(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255] (clipped), the inverse of :func:`to_model_range`."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


# ----------------------------------------------------------------------------------------------------------------
# 3. The torch Datasets the training loop iterates over
# ----------------------------------------------------------------------------------------------------------------


class ItemBatch(list):
    """A list of items that also holds them stacked (``.stacked``), made by ``InMemoryImageDataset.__getitems__``."""

    def __init__(self, items, stacked: dict):
        super().__init__(items)
        self.stacked = stacked


class InMemoryImageDataset(torch.utils.data.Dataset):
    """All images decoded once into one uint8 tensor ``(N, C, H, W)``; item i -> {"pixel_values", "labels", "index"}."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None = None):
        self.images, self.labels = images, labels

    def __len__(self):
        return self.images.shape[0]

    def __getitem__(self, i):
        item = {"pixel_values": to_model_range(self.images[i]), "index": i}
        if self.labels is not None:
            item["labels"] = int(self.labels[i])
        return item

    def __getitems__(self, indices: list[int]) -> "ItemBatch":
        """The items of a whole batch (the DataLoader asks so when a dataset has this method), converted in one tensor
        op and kept stacked for :meth:`collate`; torch's default collate still gets a plain list of items."""
        index = torch.as_tensor(indices, dtype=torch.long)
        stacked = {"pixel_values": to_model_range(self.images[index]), "index": index}
        if self.labels is not None:
            stacked["labels"] = self.labels[index]
        columns = {"pixel_values": stacked["pixel_values"].unbind(0), "index": index.tolist()}
        if self.labels is not None:
            columns["labels"] = stacked["labels"].tolist()
        return ItemBatch((dict(zip(columns, row)) for row in zip(*columns.values())), stacked=stacked)

    @staticmethod
    def collate(items):
        """``collate_fn`` for a DataLoader over this dataset: the batch ``__getitems__`` stacked, the same tensors as
        torch's default collate, which costs ~45 us an image (47 ms at batch 1024 on 2 CPU cores, two thirds of an
        H100's training step of ``mnist-small``; 10 ms this way)."""
        if isinstance(items, ItemBatch):
            return items.stacked
        return torch.utils.data.default_collate(items)

    @property
    def num_channels(self) -> int:
        return self.images.shape[1]


class StreamingImageDataset(torch.utils.data.Dataset):
    """For datasets too large for RAM: each item is decoded from the ``datasets`` table when it is asked for."""

    def __init__(self, ds, image_column, label_column, resolution, image_mode, resize_mode):
        self.ds, self.image_column, self.label_column = ds, image_column, label_column
        self.resolution, self.image_mode, self.resize_mode = resolution, image_mode, resize_mode

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        row = self.ds[int(i)]
        image = image_to_uint8(_open_image(row[self.image_column], i), self.resolution, self.image_mode,
                               self.resize_mode)
        item = {"pixel_values": to_model_range(image), "index": int(i)}
        if self.label_column is not None:
            item["labels"] = int(row[self.label_column])
        return item

    @property
    def num_channels(self) -> int:
        return channels_of(self.image_mode)


@dataclass
class DatasetInfo:
    """What the model needs to know about the data: its size, channels and classes."""

    resolution: int
    num_channels: int
    num_classes: int | None  # None for unlabelled data
    num_images: int


def detect_image_mode(ds, image_column: str, sample: int = 256) -> str:
    """"L" or "RGB", from the first ``sample`` images; mixed grayscale/colour data is an error unless forced."""
    probe = ds.select(range(min(sample, len(ds)))).cast_column(image_column, datasets.Image(decode=False))
    modes = {}
    for i, value in enumerate(probe[image_column]):
        mode = _open_image(value, i).mode
        modes[mode] = modes.get(mode, 0) + 1
    kinds = {channels_of(m) for m in modes}
    if len(kinds) > 1:
        raise InputError(f"mixed image modes in the first {len(probe)} images: {modes}. "
                         "Pass --image_mode L (grayscale, 1 channel) or --image_mode RGB (3 channels) to convert all")
    return "L" if kinds == {1} else "RGB"


def load_run_dataset(cfg, accelerator, label_column: str | None = None):
    """The training set named by a run's config (the data flags every ``TrainConfig`` has) -> (dataset, info).
    The main process reads it first (filling the ``datasets`` cache), then the others read the cache."""
    with accelerator.main_process_first():
        return load_train_dataset(
            cfg.dataset_name, cfg.train_data_dir, cfg.resolution, cfg.split, cfg.image_column, label_column,
            cfg.image_mode, cfg.resize_mode, cfg.max_train_samples, cfg.dataset_config_name, cfg.cache_dir,
            show_progress=accelerator.is_local_main_process)


def load_train_dataset(
    dataset_name: str | None = None,
    train_data_dir: str | None = None,
    resolution: int = 28,
    split: str = "train",
    image_column: str | None = None,
    label_column: str | None = None,
    image_mode: str | None = None,
    resize_mode: str = "resize",
    max_train_samples: int | None = None,
    dataset_config_name: str | None = None,
    cache_dir: str | None = None,
    storage: str = "auto",
    show_progress: bool = True,
):
    """Load, check and decode a dataset for training; returns ``(torch Dataset, DatasetInfo)``.

    ``storage``: "memory" (decode everything once), "stream" (decode per item) or "auto" (memory if < 4 GiB).
    """
    if resolution is None or int(resolution) <= 0:
        raise InputError(f"--resolution must be a positive integer, got {resolution!r}")
    if resize_mode not in RESIZE_MODES:
        raise InputError(f"--resize_mode {resize_mode!r} is not one of {list(RESIZE_MODES)}")
    if image_mode is not None and image_mode not in IMAGE_MODES:
        raise InputError(f"--image_mode {image_mode!r} is not one of {list(IMAGE_MODES)}")
    if storage not in ("auto", "memory", "stream"):
        raise InputError(f"storage {storage!r} is not one of ['auto', 'memory', 'stream']")
    if max_train_samples is not None and max_train_samples <= 0:
        raise InputError(f"--max_train_samples must be positive, got {max_train_samples}")

    ds = load_hf_dataset(dataset_name, train_data_dir, split, dataset_config_name, cache_dir)
    image_column = find_image_column(ds, image_column)
    label_column = find_label_column(ds, label_column)
    if max_train_samples is not None:
        ds = ds.select(range(min(max_train_samples, len(ds))))  # the first N rows: the same N every run
    if len(ds) == 0:
        raise InputError("the dataset has no rows")
    image_mode = image_mode or detect_image_mode(ds, image_column)
    channels = channels_of(image_mode)
    num_classes = _num_classes(ds, label_column)
    info = DatasetInfo(resolution=int(resolution), num_channels=channels, num_classes=num_classes, num_images=len(ds))

    if storage == "stream" or (storage == "auto" and len(ds) * channels * resolution**2 > IN_MEMORY_LIMIT_BYTES):
        ds = ds.cast_column(image_column, datasets.Image(decode=False))
        return StreamingImageDataset(ds, image_column, label_column, info.resolution, image_mode, resize_mode), info

    images = decode_all(ds, image_column, info.resolution, image_mode, resize_mode, show_progress)
    labels = torch.tensor(ds[label_column], dtype=torch.long) if label_column else None
    return InMemoryImageDataset(images, labels), info


def decode_all(ds, image_column, resolution, image_mode, resize_mode="resize", show_progress=True) -> torch.Tensor:
    """Decode every image of ``ds`` once -> uint8 tensor ``(N, C, resolution, resolution)``."""
    raw = ds.cast_column(image_column, datasets.Image(decode=False))[image_column]
    out = torch.empty(len(raw), channels_of(image_mode), resolution, resolution, dtype=torch.uint8)
    for i, value in enumerate(tqdm(raw, desc="decoding images", disable=not show_progress, leave=False)):
        out[i] = image_to_uint8(_open_image(value, i), resolution, image_mode, resize_mode)
    return out


def _num_classes(ds, label_column) -> int | None:
    if label_column is None:
        return None
    feature = ds.features[label_column]
    if hasattr(feature, "num_classes"):
        return int(feature.num_classes)
    return int(max(ds[label_column])) + 1


def load_images(spec: str, resolution: int | None = None, num_images: int | None = None, image_mode=None,
                default_split: str = "test", show_progress: bool = True):
    """Images of a dataset given as ``NAME_OR_PATH[:split]`` -> ``(uint8 (N, C, H, W), labels or None)``.

    Used by evaluation (the reference set) and the figures. ``resolution=None`` keeps the images' own size
    (all images must then share it).
    """
    name, split = parse_dataset_spec(spec, default_split)
    ds = load_hf_dataset(name, split=split)
    image_column, label_column = find_image_column(ds), find_label_column(ds)
    if num_images is not None:
        ds = ds.select(range(min(num_images, len(ds))))
    image_mode = image_mode or detect_image_mode(ds, image_column)
    if resolution is None:
        first = _open_image(ds.cast_column(image_column, datasets.Image(decode=False))[0][image_column], 0)
        if first.size[0] != first.size[1]:
            raise InputError(f"images of {spec!r} are {first.size[0]}x{first.size[1]}; pass a square resolution")
        resolution = first.size[0]
    images = decode_all(ds, image_column, resolution, image_mode, "resize", show_progress)
    labels = torch.tensor(ds[label_column], dtype=torch.long) if label_column else None
    return images, labels


def random_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flip each image left-right with probability 1/2 (off for digits: a mirrored 7 is not a 7)."""
    flip = torch.rand(images.shape[0], generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(-1), images)

