"""Data loading from every kind of source, checked on real files."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from sd_course.core.data import (
    load_images,
    load_train_dataset,
    parse_dataset_spec,
    random_flip,
    to_model_range,
    to_uint8,
)
from sd_course.core.errors import InputError


def test_builtin_subset_is_real_labelled_mnist():
    ds, info = load_train_dataset(show_progress=False)
    assert (info.num_images, info.num_channels, info.resolution, info.num_classes) == (2000, 1, 28, 10)
    assert torch.bincount(ds.labels).tolist() == [200] * 10
    x = ds[0]["pixel_values"]
    assert x.shape == (1, 28, 28) and x.min() == -1 and x.max() == 1  # black background, white strokes


def test_local_parquet_folder_matches_hub_schema(mnist_dir):
    ds, info = load_train_dataset(str(mnist_dir), max_train_samples=100, show_progress=False)
    assert info.num_images == 100 and info.num_channels == 1
    images, labels = load_images(f"{mnist_dir}:test", num_images=10, show_progress=False)
    assert images.shape == (10, 1, 28, 28) and images.dtype == torch.uint8
    assert labels[:5].tolist() == [7, 2, 1, 0, 4]  # the first MNIST test digits


def make_folder(root, modes, size=(20, 12)):
    rng = np.random.default_rng(0)
    for i, mode in enumerate(modes):
        folder = root / ("cats" if i % 2 else "dogs")
        folder.mkdir(parents=True, exist_ok=True)
        shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(folder / f"{i}.png")
    return root


def test_image_folder_rgb_stays_three_channels_and_is_resized(tmp_path):
    make_folder(tmp_path, ["RGB"] * 4)
    ds, info = load_train_dataset(train_data_dir=str(tmp_path), resolution=8, show_progress=False)
    assert info.num_channels == 3 and info.num_classes == 2
    assert ds[0]["pixel_values"].shape == (3, 8, 8)


def test_grayscale_stays_one_channel_and_pad_mode(tmp_path):
    make_folder(tmp_path, ["L"] * 2, size=(28, 28))
    ds, info = load_train_dataset(train_data_dir=str(tmp_path), resolution=32, resize_mode="pad", show_progress=False)
    x = ds[0]["pixel_values"]
    assert x.shape == (1, 32, 32) and info.num_channels == 1
    assert torch.all(x[:, :2] == -1) and torch.all(x[:, :, -2:] == -1)  # 2 black pixels of padding on each side


def test_save_to_disk_dataset_and_no_image_column(tmp_path):
    rows = {"pixels": [Image.new("L", (4, 4), 255)] * 3, "label": [0, 1, 2]}
    ds = datasets.Dataset.from_dict(rows, features=datasets.Features(
        {"pixels": datasets.Image(), "label": datasets.Value("int64")}))
    ds.save_to_disk(str(tmp_path / "saved"))
    with pytest.raises(InputError, match=r"no image column.*--image_column"):
        load_train_dataset(str(tmp_path / "saved"), resolution=4, show_progress=False)
    loaded, info = load_train_dataset(str(tmp_path / "saved"), resolution=4, image_column="pixels",
                                      show_progress=False)
    assert info.num_images == 3 and loaded[2]["labels"] == 2 and torch.all(loaded[0]["pixel_values"] == 1)


def test_corrupt_image_names_the_file(tmp_path):
    make_folder(tmp_path, ["L"] * 3)
    (tmp_path / "dogs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    with pytest.raises(InputError, match=r"broken\.png.*could not be decoded"):
        load_train_dataset(train_data_dir=str(tmp_path), resolution=8, show_progress=False)


def test_mixed_modes_are_refused_unless_forced(tmp_path):
    make_folder(tmp_path, ["L", "RGB", "L", "RGB"])
    with pytest.raises(InputError, match="mixed image modes.*--image_mode"):
        load_train_dataset(train_data_dir=str(tmp_path), resolution=8, show_progress=False)
    ds, info = load_train_dataset(train_data_dir=str(tmp_path), resolution=8, image_mode="L", show_progress=False)
    assert info.num_channels == 1 and ds[1]["pixel_values"].shape == (1, 8, 8)


def test_bad_sources_and_splits(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_train_dataset("./missing/folder")
    with pytest.raises(InputError, match="not a folder"):
        load_train_dataset(train_data_dir=str(tmp_path / "nope"))
    with pytest.raises(InputError, match="no split 'validation'"):
        load_train_dataset(split="validation")
    with pytest.raises(InputError, match="resolution must be a positive"):
        load_train_dataset(resolution=0)


def test_ranges_and_helpers():
    x = torch.tensor([0, 255, 128], dtype=torch.uint8)
    torch.testing.assert_close(to_model_range(x), torch.tensor([-1.0, 1.0, 128 / 127.5 - 1]))
    assert torch.equal(to_uint8(to_model_range(x)), x)
    assert parse_dataset_spec("ylecun/mnist:test") == ("ylecun/mnist", "test")
    assert parse_dataset_spec("ylecun/mnist") == ("ylecun/mnist", "test")
    assert parse_dataset_spec("../data/mnist:train") == ("../data/mnist", "train")
    images = torch.arange(2 * 1 * 2 * 3, dtype=torch.float).view(2, 1, 2, 3)
    flipped = random_flip(images, torch.Generator().manual_seed(0))
    for i in range(2):
        assert torch.equal(flipped[i], images[i]) or torch.equal(flipped[i], images[i].flip(-1))


def test_in_memory_batches_are_fetched_whole_and_equal_to_item_by_item_collation():
    """The training loop's DataLoader asks InMemoryImageDataset for a whole batch (``__getitems__``) and takes it as
    stacked (``collate``); that must give exactly what collating ``dataset[i]`` one by one gives, and a DataLoader
    built without our collate_fn must still work."""
    from sd_course.core.data import InMemoryImageDataset

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (37, 1, 28, 28), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (37,), generator=g)
    order = torch.randperm(37, generator=g).tolist()
    for dataset in (InMemoryImageDataset(images, labels), InMemoryImageDataset(images)):
        one_by_one = [torch.utils.data.default_collate([dataset[i] for i in order[k:k + 8]]) for k in range(0, 37, 8)]
        for collate_fn in (dataset.collate, None):
            loader = torch.utils.data.DataLoader(dataset, batch_size=8, sampler=order, collate_fn=collate_fn)
            batches = list(loader)
            assert len(batches) == len(one_by_one) == 5
            for got, want in zip(batches, one_by_one):
                assert got.keys() == want.keys()
                for key in want:
                    assert got[key].dtype == want[key].dtype and torch.equal(got[key], want[key]), key
