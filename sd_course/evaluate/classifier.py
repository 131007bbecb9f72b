"""A small digit classifier whose penultimate features define the course's FID / KID / precision / recall.

FID is usually computed on the 2048-d pool features of an ImageNet Inception-v3. Those weights cannot be downloaded
on the course machines, and an ImageNet network looking at a 28x28 grey digit (blown up to 299x299) is a poor judge
of digits anyway. So the package ships its own judge: a 3-block CNN trained on MNIST (< 1 MB, >= 99% test accuracy,
measured in ``assets/mnist-classifier/README.md``). Its 128-d penultimate layer -- the vector the last linear layer
reads to decide the class -- is the feature space the metrics of ``sd_course/evaluate/metrics.py`` live in. Every number
computed in it is named ``..._mnist_classifier`` so nobody mistakes it for an Inception FID: the two are on
different scales and cannot be compared with each other (nor with FIDs in papers).

Train it again (the exact command that produced the shipped weights; ~4 minutes on 2 idle CPU cores):

    python training/train_classifier.py --dataset_name ../shared/data/mnist \
        --output_dir sd_course/assets/mnist-classifier --seed 0

Use it:

    python -c "from sd_course.evaluate.classifier import load_classifier; m = load_classifier(); print(m.weights_sha256)"
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tqdm.auto import tqdm

from sd_course.core.digit_cnn import DEFAULT_CONFIG, DigitCNN, load_digit_cnn, normalize
from sd_course.core.errors import InputError
from sd_course.core.provenance import file_sha256

DEFAULT_CLASSIFIER_DIR = Path(__file__).resolve().parents[1] / "assets" / "mnist-classifier"
CLASSIFIER_ID = "sd_course/mnist-classifier"  # recorded next to every metric computed with these features

# The input the network expects: 1-channel 28x28 uint8 pixels, turned into float as (pixel/255 - mean) / std with
# MNIST's own training-set mean and standard deviation (so the first layer sees roughly zero-mean, unit-variance data).
def check_images(images: torch.Tensor, config: dict = DEFAULT_CONFIG, what: str = "images") -> None:
    """The classifier only reads what it was trained on: uint8 (N, 1, 28, 28). Anything else is an InputError."""
    expected = (config["in_channels"], config["image_size"], config["image_size"])
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise InputError(f"{what} must be a uint8 tensor (N, C, H, W), got {images.dtype} of shape "
                         f"{tuple(images.shape)}; convert with sd_course.core.data.to_uint8")
    if tuple(images.shape[1:]) != expected:
        raise InputError(
            f"{what} are {images.shape[1]}-channel {images.shape[2]}x{images.shape[3]}, but the MNIST classifier "
            f"reads {expected[0]}-channel {expected[1]}x{expected[2]} digits; evaluate a 28x28 grayscale model or "
            "dataset (e.g. MNIST, Fashion-MNIST), or use Inception FID (--inception_weights) for other images")


# ----------------------------------------------------------------------------------------------------------------
# Loading the shipped weights
# ----------------------------------------------------------------------------------------------------------------


def build_classifier(config: dict | None = None, seed: int | None = None) -> DigitCNN:
    """A freshly initialised classifier (seeded when ``seed`` is given)."""
    config = dict(DEFAULT_CONFIG if config is None else config)
    if seed is not None:
        torch.manual_seed(seed)
    model = DigitCNN(**config)
    model.config = config
    return model


def load_classifier(path: str | Path | None = None) -> DigitCNN:
    """The classifier saved in ``path`` (a folder with ``model.safetensors`` + ``config.json``; default: shipped).

    The returned model is in eval mode and carries ``.config``, ``.weights_sha256`` and ``.id``.
    """
    folder = Path(path) if path is not None else DEFAULT_CLASSIFIER_DIR
    weights = folder / "model.safetensors"
    model = load_digit_cnn(folder, what="classifier", fix="train one with `python training/train_classifier.py "
                                                          "--output_dir DIR` and pass that DIR")
    model.weights_sha256 = file_sha256(weights)
    model.id = CLASSIFIER_ID if folder.resolve() == DEFAULT_CLASSIFIER_DIR.resolve() else str(folder)
    return model


@torch.no_grad()
def predict(model: DigitCNN, images_uint8: torch.Tensor, batch_size: int = 500, show_progress: bool = False,
            desc: str = "classifier features"):
    """uint8 images (N, 1, 28, 28) -> (features (N, D) float64, class probabilities (N, 10) float64)."""
    check_images(images_uint8, model.config)
    was_training = model.training
    model.eval()
    feats, probs = [], []
    for start in tqdm(range(0, len(images_uint8), batch_size), desc=desc, disable=not show_progress, leave=False):
        x = normalize(images_uint8[start:start + batch_size], model.config)
        f = model.features(x)
        feats.append(f.double())
        probs.append(model.head(f).softmax(-1).double())
    model.train(was_training)
    if not feats:
        raise InputError("no images to classify (an empty set); pass at least 2 images")
    return torch.cat(feats), torch.cat(probs)


def accuracy(model: DigitCNN, images_uint8: torch.Tensor, labels: torch.Tensor, batch_size: int = 500) -> float:
    """Fraction of images whose most probable class is the label."""
    _, probs = predict(model, images_uint8, batch_size)
    return (probs.argmax(-1) == labels).double().mean().item()


# ----------------------------------------------------------------------------------------------------------------
# Training (called by training/train_classifier.py)
# ----------------------------------------------------------------------------------------------------------------


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by up to ``max_shift`` pixels (zero padding): a digit moved by 2 px is the same digit."""
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4)  # uint8 in, black (0) borders
    dx, dy = torch.randint(0, 2 * max_shift + 1, (2, n), generator=generator)
    return torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])


def train_classifier(images_uint8: torch.Tensor, labels: torch.Tensor, epochs: int = 3, batch_size: int = 128,
                     learning_rate: float = 3e-3, max_shift: int = 2, seed: int = 0, show_progress: bool = True,
                     config: dict | None = None, log=print) -> DigitCNN:
    """Train a DigitCNN with AdamW and a one-cycle learning rate (cross-entropy on the labels); seeded throughout.

    Returns the model in eval mode. The same seed, data and torch version give the same weights.
    """
    generator = torch.Generator().manual_seed(seed)
    model = build_classifier(config, seed=seed)
    check_images(images_uint8, model.config, "training images")
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=1e-4)
    steps_per_epoch = math.ceil(len(images_uint8) / batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=learning_rate,
                                                   total_steps=epochs * steps_per_epoch)
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(images_uint8), generator=generator)
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{epochs}", disable=not show_progress)
        total, correct, loss_sum = 0, 0, 0.0
        for step in bar:
            idx = order[step * batch_size:(step + 1) * batch_size]
            x = normalize(random_shift(images_uint8[idx], max_shift, generator), model.config)
            y = labels[idx]
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += len(idx)
            correct += (logits.argmax(-1) == y).sum().item()
            loss_sum += loss.item() * len(idx)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{loss_sum / total:.4f}", acc=f"{correct / total:.4f}")
        log(f"epoch {epoch + 1}: train loss {loss_sum / total:.4f}, train accuracy {correct / total:.4f}")
    return model.eval()


def save_classifier(model: DigitCNN, output_dir: str | Path) -> Path:
    """Write ``model.safetensors`` (fp32) and ``config.json``; returns the weights' path."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    weights = output_dir / "model.safetensors"
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(weights))
    (output_dir / "config.json").write_text(json.dumps(model.config, indent=2) + "\n")
    return weights
