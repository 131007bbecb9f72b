"""A small digit CNN: the network behind the course's metrics and the autoencoder's perceptual loss.

    python -c "from sd_course.core.digit_cnn import DigitCNN; print(DigitCNN())"

Two trained copies ship with the package, the same architecture with other seeds:

* ``sd_course/assets/mnist-classifier``: the judge. Its 128-d penultimate features are the space of the FID / KID /
  precision / recall of ``sd_course/evaluate/metrics.py``, its softmax reads generated digits.
* ``sd_course/assets/mnist-perceptual``: the perceptual loss of the autoencoder (``sd_course/latent/autoencoder.py``),
  LPIPS's role in Stable Diffusion's autoencoder recipe. A network of its own, so that training never optimises the
  features the metrics are computed in.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from sd_course.core.errors import InputError

# The input the network expects: 1-channel 28x28 uint8 pixels, turned into float as (pixel/255 - mean) / std with
# MNIST's own training-set mean and standard deviation (so the first layer sees roughly zero-mean, unit-variance data).
DEFAULT_CONFIG = dict(
    architecture="DigitCNN",
    in_channels=1,
    image_size=28,
    channels=[32, 64, 128],  # widths of the three conv blocks: 28 -> 14 -> 7 -> 3
    feature_dim=128,  # the penultimate layer: the feature space of the metrics
    num_classes=10,
    normalization=dict(input="uint8 pixels / 255", mean=0.1307, std=0.3081),
    feature_layer="penultimate (ReLU of the 128-d hidden layer, the input of the final linear layer)",
)


class DigitCNN(nn.Module):
    """conv-BN-ReLU-maxpool x 3 (28 -> 14 -> 7 -> 3), then a 128-d hidden layer (the features), then 10 logits."""

    def __init__(self, in_channels: int = 1, image_size: int = 28, channels=(32, 64, 128), feature_dim: int = 128,
                 num_classes: int = 10, **_ignored):
        super().__init__()
        blocks, c_in, size = [], in_channels, image_size
        for c_out in channels:
            blocks += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
                       nn.MaxPool2d(2)]
            c_in, size = c_out, size // 2
        self.blocks = nn.Sequential(*blocks)
        self.hidden = nn.Linear(c_in * size * size, feature_dim)
        self.dropout = nn.Dropout(0.3)  # only active while training; features are taken in eval mode
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images (B, 1, 28, 28) -> penultimate features (B, feature_dim)."""
        return F.relu(self.hidden(self.blocks(x).flatten(1)))

    def feature_maps(self, x: torch.Tensor, num_blocks: int) -> list[torch.Tensor]:
        """Normalised images -> the ReLU outputs of the first ``num_blocks`` conv blocks (before each max-pool):
        (B, 32, 28, 28), (B, 64, 14, 14), ...: strokes and their parts, where the penultimate layer holds classes."""
        maps = []
        for layer in self.blocks:
            x = layer(x)
            if isinstance(layer, nn.ReLU):
                maps.append(x)
                if len(maps) == num_blocks:
                    break
        return maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(x)))


def normalize(images_uint8: torch.Tensor, config: dict = DEFAULT_CONFIG) -> torch.Tensor:
    """uint8 (B, 1, 28, 28) -> float input of the network: ``(pixel / 255 - mean) / std``."""
    norm = config["normalization"]
    return (images_uint8.float() / 255.0 - norm["mean"]) / norm["std"]


def load_digit_cnn(folder: str | Path, what: str = "network", fix: str = "") -> DigitCNN:
    """A trained ``DigitCNN`` from a folder with ``model.safetensors`` + ``config.json``: in eval mode, frozen,
    carrying ``.config``."""
    folder = Path(folder)
    weights, config_file = folder / "model.safetensors", folder / "config.json"
    if not weights.is_file() or not config_file.is_file():
        raise InputError(f"no {what} in {folder} (it needs model.safetensors and config.json)" + (f"; {fix}" if fix
                                                                                                    else ""))
    config = json.loads(config_file.read_text())
    model = DigitCNN(**config)
    model.config = config
    model.load_state_dict(load_file(str(weights)))
    return model.eval().requires_grad_(False)
