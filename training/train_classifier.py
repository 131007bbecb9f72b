"""Train the digit classifier whose features define sd_course's FID / KID / precision / recall.

The exact commands that produced the shipped weights in ``sd_course/assets/mnist-classifier/`` (the metrics' judge)
and ``sd_course/assets/mnist-perceptual/`` (the same network with another seed: the autoencoder's perceptual loss, kept
apart from the metrics' features):

    python training/train_classifier.py --dataset_name ../shared/data/mnist \
        --output_dir sd_course/assets/mnist-classifier --seed 0
    python training/train_classifier.py --dataset_name ../shared/data/mnist \
        --output_dir sd_course/assets/mnist-perceptual --seed 1 --role perceptual

With internet, ``--dataset_name ylecun/mnist`` (the default) fetches the same data from the Hub. It trains on the
60,000 training digits, measures accuracy on the 10,000 test digits (never seen in training), and writes
``model.safetensors`` (fp32), ``config.json`` (architecture, feature dimension, input normalisation) and a
``README.md`` card that states the measured test accuracy, the command, the data, the epochs and the wall-clock time.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

from sd_course import __version__
from sd_course.core.data import load_images
from sd_course.core.provenance import file_sha256
from sd_course.evaluate.classifier import accuracy, save_classifier, train_classifier


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset_name", default="ylecun/mnist",
                   help="Hub id or local folder with train and test splits (columns image, label)")
    p.add_argument("--output_dir", default="mnist-classifier")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--learning_rate", type=float, default=3e-3, help="peak of the one-cycle schedule")
    p.add_argument("--max_shift", type=int, default=2, help="random translation augmentation, in pixels")
    p.add_argument("--max_train_samples", type=int, default=None, help="first N training digits (quick tries)")
    p.add_argument("--num_threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--role", choices=sorted(ROLES), default="metrics",
                   help="what the network is for: the card's title and first paragraph")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    command = "python training/train_classifier.py " + " ".join(map(shlex.quote, sys.argv[1:] if argv is None
                                                                     else argv))
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    torch.manual_seed(args.seed)
    start = time.time()

    train_x, train_y = load_images(f"{args.dataset_name}:train", resolution=28, num_images=args.max_train_samples,
                                   image_mode="L")
    test_x, test_y = load_images(f"{args.dataset_name}:test", resolution=28, image_mode="L")
    print(f"train {tuple(train_x.shape)}, test {tuple(test_x.shape)} ({time.time() - start:.0f} s to decode)")

    train_start = time.time()
    model = train_classifier(train_x, train_y, epochs=args.epochs, batch_size=args.batch_size,
                             learning_rate=args.learning_rate, max_shift=args.max_shift, seed=args.seed)
    train_seconds = time.time() - train_start
    test_accuracy = accuracy(model, test_x, test_y)
    train_accuracy = accuracy(model, train_x, train_y)
    print(f"test accuracy {test_accuracy:.4f} (train {train_accuracy:.4f}), {train_seconds:.0f} s training")

    weights = save_classifier(model, args.output_dir)
    size = weights.stat().st_size
    num_params = sum(p.numel() for p in model.parameters())
    card = CARD.format(
        name=Path(args.output_dir).name, role=ROLES[args.role],
        test_accuracy=100 * test_accuracy, num_test=len(test_x), train_accuracy=100 * train_accuracy,
        num_train=len(train_x), dataset=args.dataset_name, command=command, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.learning_rate, max_shift=args.max_shift, seed=args.seed,
        train_minutes=train_seconds / 60, total_minutes=(time.time() - start) / 60, threads=torch.get_num_threads(),
        cpu=platform.processor() or platform.machine(), torch_version=torch.__version__, version=__version__,
        load=os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan"),
        num_params=num_params, size_kb=size / 1024, sha256=file_sha256(weights), feature_dim=model.config["feature_dim"],
        mean=model.config["normalization"]["mean"], std=model.config["normalization"]["std"],
    )
    (Path(args.output_dir) / "README.md").write_text(card)
    print(f"wrote {args.output_dir}/model.safetensors ({size / 1024:.0f} KiB), config.json, README.md")


ROLES = {
    "metrics": "the feature extractor of sd_course's metrics. Its **penultimate 128-d features** are the space in "
               "which `sd_course.evaluate.metrics` computes `fid_mnist_classifier`, `kid_mnist_classifier`, precision "
               "and recall; its softmax gives the class histogram and mean confidence of generated digits. These "
               "numbers are **not** Inception FIDs and cannot be compared with FIDs published in papers",
    "perceptual": "the perceptual network of the digit autoencoder. Its first two conv blocks' feature maps are "
                  "compared by the perceptual term of `sd_course/latent/autoencoder.py` (LPIPS's role in Stable "
                  "Diffusion's autoencoder recipe). It is trained with another seed than the metrics' classifier, so "
                  "the autoencoder is never trained on the features its FID is measured in",
}

CARD = """---
license: apache-2.0
datasets:
- ylecun/mnist
metrics:
- accuracy
model-index:
- name: sd_course {name}
  results:
  - task: {{type: image-classification}}
    dataset: {{name: MNIST, type: ylecun/mnist, split: test}}
    metrics:
    - {{type: accuracy, value: {test_accuracy:.2f}}}
---
# {name}

This network is {role}.

A small CNN (3 x conv-BN-ReLU-maxpool with 32/64/128 channels, then a {feature_dim}-d hidden layer and 10 logits;
{num_params:,} parameters, {size_kb:.0f} KiB as fp32 safetensors; `sd_course/core/digit_cnn.py`).

| | |
|---|---|
| MNIST test accuracy (measured) | **{test_accuracy:.2f}%** on {num_test:,} test digits |
| MNIST train accuracy | {train_accuracy:.2f}% on {num_train:,} training digits |
| data | `{dataset}` (train split for training, test split for the accuracy) |
| epochs | {epochs} (batch {batch_size}, AdamW, one-cycle lr peak {lr}, random shifts of up to {max_shift} px) |
| seed | {seed} |
| wall-clock | {train_minutes:.1f} min training, {total_minutes:.1f} min in all ({threads} CPU threads, {cpu}, load average {load:.1f}) |
| software | torch {torch_version}, sd_course {version} |
| input | uint8 28x28 grayscale -> (pixel / 255 - {mean}) / {std} |
| sha256 of model.safetensors | `{sha256}` |

Reproduce with:

```bash
{command}
```

MNIST: Yann LeCun, Corinna Cortes and Christopher J. C. Burges, "The MNIST database of handwritten digits"
(CC BY-SA 3.0).
"""


if __name__ == "__main__":
    main()
