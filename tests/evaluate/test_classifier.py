"""Tests of sd_course/evaluate/classifier.py: the shipped weights (size, card, accuracy), input checks, seeded training.

    python -m pytest tests/evaluate/test_classifier.py -q
"""

import json
import re
from pathlib import Path

import pytest
import torch

from sd_course.core.provenance import file_sha256
from sd_course.core.data import load_images
from sd_course.core.errors import InputError
from sd_course.evaluate.classifier import (
    DEFAULT_CLASSIFIER_DIR,
    accuracy,
    build_classifier,
    check_images,
    load_classifier,
    predict,
    train_classifier,
)

MNIST = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"


def test_shipped_weights_are_small_and_described_by_their_card():
    weights = DEFAULT_CLASSIFIER_DIR / "model.safetensors"
    assert weights.stat().st_size < 2 * 2**20
    config = json.loads((DEFAULT_CLASSIFIER_DIR / "config.json").read_text())
    model = load_classifier()
    assert model.weights_sha256 == file_sha256(weights)
    assert model.hidden.out_features == config["feature_dim"] == 128
    card = (DEFAULT_CLASSIFIER_DIR / "README.md").read_text()
    stated = float(re.search(r"MNIST test accuracy \(measured\) \| \*\*([\d.]+)%", card).group(1))
    assert stated >= 99.0
    assert model.weights_sha256 in card and "train_classifier.py" in card


def test_shipped_classifier_recognises_the_packaged_digits():
    images, labels = load_images("builtin:mnist-2k:train", show_progress=False)
    features, probs = predict(load_classifier(), images[:500])
    assert features.shape == (500, 128) and features.dtype == torch.float64
    assert (probs.argmax(-1) == labels[:500]).double().mean() >= 0.99  # (training digits: a sanity check only)


@pytest.mark.skipif(not (MNIST / "test.parquet").is_file(), reason=f"real MNIST test set not found at {MNIST}")
def test_shipped_classifier_accuracy_on_real_mnist_test_set():
    images, labels = load_images(f"{MNIST}:test", show_progress=False)
    assert accuracy(load_classifier(), images, labels) >= 0.99


def test_wrong_images_are_input_errors():
    model = build_classifier(seed=0)
    with pytest.raises(InputError, match="3-channel 28x28.*1-channel 28x28"):
        check_images(torch.zeros(2, 3, 28, 28, dtype=torch.uint8), model.config)
    with pytest.raises(InputError, match="uint8"):
        check_images(torch.zeros(2, 1, 28, 28), model.config)
    with pytest.raises(InputError, match="no classifier in"):
        load_classifier("/nonexistent/folder")


def test_training_is_seeded_and_learns(tmp_path):
    images, labels = load_images("builtin:mnist-2k:train", show_progress=False)
    train_x, train_y, test_x, test_y = images[:1500], labels[:1500], images[1500:], labels[1500:]
    kwargs = dict(epochs=1, batch_size=64, seed=3, show_progress=False, log=lambda *_: None)
    first = train_classifier(train_x[:256], train_y[:256], **kwargs)
    second = train_classifier(train_x[:256], train_y[:256], **kwargs)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    model = train_classifier(train_x, train_y, epochs=2, batch_size=64, seed=0, show_progress=False,
                             log=lambda *_: None)
    assert accuracy(model, test_x, test_y) > 0.8  # chance is 0.1
