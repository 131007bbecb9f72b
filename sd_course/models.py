"""The U-Net: diffusers' ``UNet2DModel`` as the denoiser ``eps_theta(x_t, t)``.

A preset fixes the *architecture* (widths, depth, where attention sits); the *data* fixes the image size and the
channel count, so one preset trains on 1-channel MNIST and on 3-channel images alike:

    python -c "from sd_course.models import build_unet; print(build_unet('mnist', resolution=28, channels=1))"

Q: Why a U-Net as the denoiser?
A: The network must map an image x_t (plus the noise level t) to an image-shaped output (the noise eps, the clean
   image x_0 or the velocity v). A U-Net does this at several scales at once: the down path sees ever larger
   neighbourhoods (what digit is this?), the up path restores full resolution, and the skip connections carry the
   fine detail across, so the output can be exact to the pixel. The timestep t enters every residual block as a
   sinusoidal embedding (the same trick as positional encodings in transformers), so one network serves every
   noise level: at large t it must guess global shape, at small t only the last bit of texture.
"""

from __future__ import annotations

import json
from pathlib import Path

from diffusers import UNet2DModel

from sd_course.errors import InputError

PRESETS = {
    # 28x28 digits on a CPU (~3.9M parameters): 28 -> 14 -> 7. Self-attention costs O(pixels^2), so it only sits at
    # the 7x7 level, where 49 tokens see each other (the global shape of the digit); the 28x28 and 14x14 levels are
    # plain residual blocks (convolutions already cover local strokes).
    "mnist": dict(
        sample_size=28,
        in_channels=1,
        out_channels=1,
        block_out_channels=(32, 64, 128),  # width of each level; doubling as the image halves
        layers_per_block=2,  # residual blocks per level
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        attention_head_dim=32,  # 128 channels at 7x7 -> 4 heads
        norm_num_groups=16,  # GroupNorm groups (must divide every width)
    ),
    # 32x32 colour images (CIFAR-10, ~16M parameters): 32 -> 16 -> 8, attention at 16x16 and 8x8 as in Ho et al. 2020.
    "cifar10": dict(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        block_out_channels=(64, 128, 256),
        layers_per_block=2,
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=64,
        norm_num_groups=32,
    ),
    # For tests (< 100k parameters): two levels, no attention. Trains a few steps per second on a CPU.
    "tiny": dict(
        sample_size=16,
        in_channels=1,
        out_channels=1,
        block_out_channels=(12, 24),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
    ),
}


def unet_config(name_or_path: str) -> dict:
    """A preset name (``mnist``, ``cifar10``, ``tiny``), a ``config.json`` or a folder holding one -> config dict."""
    if name_or_path in PRESETS:
        return dict(PRESETS[name_or_path])
    path = Path(name_or_path)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise InputError(f"--model_config_name_or_path {name_or_path!r} is neither a preset {sorted(PRESETS)} "
                         "nor a UNet2DModel config.json (or a folder holding one)")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{path} is not valid JSON ({e})") from e
    if config.get("_class_name", "UNet2DModel") != "UNet2DModel":
        raise InputError(f"{path} describes a {config['_class_name']}, not a UNet2DModel")
    return {k: v for k, v in config.items() if not k.startswith("_")}


def num_downsamples(config: dict) -> int:
    """Every down block but the last halves the image (diffusers' ``add_downsample = not is_final_block``)."""
    return len(config["down_block_types"]) - 1


def check_resolution(config: dict, resolution: int) -> None:
    """The U-Net halves the image ``num_downsamples`` times, so the size must divide by 2**that."""
    factor = 2 ** num_downsamples(config)
    if resolution % factor:
        ok = [r for r in range(resolution - factor, resolution + factor + 1) if r > 0 and r % factor == 0]
        raise InputError(
            f"resolution {resolution} cannot be halved {num_downsamples(config)} times by this U-Net (it needs a "
            f"multiple of {factor}); use --resolution {' or '.join(map(str, ok))}, or a model with fewer down blocks"
        )


def build_unet(name_or_path: str = "mnist", resolution: int | None = None, channels: int | None = None,
               **overrides) -> UNet2DModel:
    """A freshly initialised ``UNet2DModel`` from a preset or config, sized for the data.

    ``resolution`` and ``channels`` come from the dataset (``None`` keeps the preset's); ``overrides`` are any
    other ``UNet2DModel`` arguments (e.g. ``num_class_embeds=10`` for class conditioning).
    """
    config = unet_config(name_or_path)
    if resolution is not None:
        config["sample_size"] = int(resolution)
    if channels is not None:
        config["in_channels"] = config["out_channels"] = int(channels)
    config.update(overrides)
    check_resolution(config, config["sample_size"])
    try:
        return UNet2DModel(**config)
    except (TypeError, ValueError) as e:
        raise InputError(f"could not build a UNet2DModel from {name_or_path!r}: {e}") from e


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())
