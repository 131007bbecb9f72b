"""The U-Net: diffusers' ``UNet2DModel`` as the denoiser ``eps_theta(x_t, t)``.

A preset fixes the *architecture* (widths, depth, where attention sits); the *data* fixes the image size and the
channel count, so one preset trains on 1-channel MNIST and on 3-channel images alike:

    python -c "from sd_course.core.models import build_unet; print(build_unet('mnist-small', resolution=28, channels=1))"

Q: Why a U-Net as the denoiser?
A: The network must map an image x_t (plus the noise level t) to an image-shaped output (the noise eps, the clean
   image x_0 or, for the shipped model, the velocity v). A U-Net does this at several scales at once: the down path
   sees ever larger neighbourhoods (what digit is this?), the up path restores full resolution, and the skip
   connections carry the fine detail across, so the output can be exact to the pixel. The shipped model
   (pipelines/ddpm-mnist/unet/config.json) is the ``mnist-small`` preset: widths 32, 64, 128 at 28x28, 14x14 and
   7x7, one residual block per level on the way down (``layers_per_block: 1``; the up path has one more per level, as
   in every diffusers UNet2DModel), self-attention with 4 heads only at 7x7 (the last down block, the middle block and
   the first up block), [2,734,945](docs/figures/anatomy/anatomy.json#models.class=UNet2DModel.total_params)
   parameters; the first Cmd below prints it (``build_unet('mnist', ...)`` is the larger preset that
   training/configs/fashion_mnist.yaml uses: two blocks per level, 3.9M parameters). The timestep
   enters in three stages: t is turned into 32 sinusoidal features (the same trick as positional encodings in
   transformers), a small MLP (Linear 32 -> 128, SiLU, Linear 128 -> 128) maps them to one embedding, and each of the
   11 residual blocks has its own projection (SiLU, then Linear 128 -> that block's channels) whose output is added
   to every position of its feature map after the block's first convolution: a per-channel shift that depends on t.
   So one network serves every noise level: at large t it must guess global shape, at small t only the last bit of
   texture.
Cmd: python -c "from sd_course.core.models import build_unet; print(build_unet('mnist-small', resolution=28, channels=1))"
Cmd: sd-course anatomy --output_dir docs/figures/anatomy
Fig: docs/figures/anatomy/anatomy.png
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel, UNet2DModel
from diffusers.models.attention_processor import Attention, AttnProcessor
from transformers import CLIPTextConfig, CLIPTextModel, PreTrainedModel

from sd_course.core.errors import InputError

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
    # The `mnist` U-Net with one residual block per level instead of two (~2.7M parameters): 1.6x the training
    # images/s of `mnist` on 2 CPU cores (benchmarks/README.md section 2 compares their quality per CPU-minute).
    "mnist-small": dict(
        sample_size=28,
        in_channels=1,
        out_channels=1,
        block_out_channels=(32, 64, 128),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        attention_head_dim=32,  # 128 channels at 7x7 -> 4 heads
        norm_num_groups=16,
    ),
    # Half the widths of `mnist` (~1.0M parameters, 2.4x its training images/s): the size of the GAN baseline.
    "mnist-narrow": dict(
        sample_size=28,
        in_channels=1,
        out_channels=1,
        block_out_channels=(16, 32, 64),
        layers_per_block=2,
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        attention_head_dim=32,  # 64 channels at 7x7 -> 2 heads
        norm_num_groups=8,
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

# `mnist-narrow` with one residual block per level (~0.69M parameters): 1.5x its training images/s on a CPU without
# native bf16. The first run's U-Net (training/configs/mnist-quick.yaml): in ten CPU-minutes more steps of a leaner
# net beat fewer of a deeper one (benchmarks/README.md section 14).
PRESETS["mnist-lean"] = dict(PRESETS["mnist-narrow"], layers_per_block=1)


def unet_config(name_or_path: str) -> dict:
    """A preset name (``mnist``, ``cifar10``, ``tiny``), a ``config.json`` or a folder holding one -> config dict."""
    return _preset_or_config(name_or_path, PRESETS, "UNet2DModel", "--model_config_name_or_path")


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


# ----------------------------------------------------------------------------------------------------------------
# The autoencoder of latent diffusion: diffusers' AutoencoderKL (sd_course/latent/autoencoder.py trains it)
# ----------------------------------------------------------------------------------------------------------------

VAE_PRESETS = {
    # Digits padded to 32x32 -> latents 4x8x8 (down-sampling factor 4: every encoder block but the last halves the
    # image). 784 pixels become 256 numbers; Stable Diffusion's own VAE has factor 8 and 4 channels (512x512x3 ->
    # 64x64x4, 48x fewer numbers); on 28-pixel digits factor 8 would leave 4x4 latents, too coarse to keep strokes.
    "mnist-vae": dict(
        sample_size=32,
        in_channels=1,
        out_channels=1,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 32, 64),  # 32x32 -> 16x16 -> 8x8; narrow at 32x32, where convolutions cost most
        layers_per_block=1,  # (the decoder has one more per level, as in Stable Diffusion's)
        latent_channels=4,
        norm_num_groups=8,
    ),
    # For tests: 16x16 -> 8x8 latents, a few thousand parameters.
    "tiny-vae": dict(
        sample_size=16,
        in_channels=1,
        out_channels=1,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
    ),
}


def vae_downsample_factor(config: dict) -> int:
    return 2 ** (len(config["block_out_channels"]) - 1)


def build_vae(name_or_path: str = "mnist-vae", resolution: int | None = None, channels: int | None = None):
    """A freshly initialised ``AutoencoderKL`` from a preset (``mnist-vae``, ``tiny-vae``) or a config.json."""
    config = _preset_or_config(name_or_path, VAE_PRESETS, "AutoencoderKL", "--vae_config_name_or_path")
    if resolution is not None:
        config["sample_size"] = int(resolution)
    if channels is not None:
        config["in_channels"] = config["out_channels"] = int(channels)
    factor = vae_downsample_factor(config)
    if config["sample_size"] % factor:
        raise InputError(f"resolution {config['sample_size']} is not a multiple of the VAE's down-sampling factor "
                         f"{factor}; pad the images (--resize_mode pad --resolution {factor * -(-config['sample_size'] // factor)})")
    return AutoencoderKL(**config)


# ----------------------------------------------------------------------------------------------------------------
# Text-to-image: a U-Net with cross-attention and a small CLIP text encoder (sd_course/latent/text_to_image.py)
# ----------------------------------------------------------------------------------------------------------------

CONDITIONAL_UNET_PRESETS = {
    # On 4x8x8 latents: 8x8 -> 4x4. Cross-attention (text -> image) at 4x4 and in the middle block only: attention
    # costs O(tokens x pixels) per layer, and at 4x4 the 16 positions already see the whole digit.
    "mini-sd": dict(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(64, 128),
        layers_per_block=2,
        cross_attention_dim=128,  # = the text encoder's hidden size
        attention_head_dim=8,  # 128 channels -> 16 heads of 8 (diffusers' naming: this is the number of heads)
        norm_num_groups=16,
    ),
    "tiny-sd": dict(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(16, 32),
        layers_per_block=1,
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=8,
    ),
}

# `mini-sd` with one residual block per level (~4.0M parameters): 1.35x its training images/s on a CPU without
# native bf16. Part 3's first run (training/configs/mini-sd-quick.yaml), where steps count more than depth.
CONDITIONAL_UNET_PRESETS["mini-sd-lean"] = dict(CONDITIONAL_UNET_PRESETS["mini-sd"], layers_per_block=1)

TEXT_ENCODER_PRESETS = {
    # A 4-layer CLIP text transformer, 128 wide: captions are a handful of words, the vocabulary ~400 tokens.
    "mini-sd": dict(hidden_size=128, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
                    max_position_embeddings=16, projection_dim=128),
    "tiny-sd": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                    max_position_embeddings=16, projection_dim=32),
}


def build_conditional_unet(name_or_path: str = "mini-sd", latent_size: int | None = None,
                           latent_channels: int | None = None, cross_attention_dim: int | None = None):
    """A ``UNet2DConditionModel`` (Stable Diffusion's U-Net class) sized for the VAE's latents and the text encoder."""
    config = _preset_or_config(name_or_path, CONDITIONAL_UNET_PRESETS, "UNet2DConditionModel",
                               "--unet_config_name_or_path")
    if latent_size is not None:
        config["sample_size"] = int(latent_size)
    if latent_channels is not None:
        config["in_channels"] = config["out_channels"] = int(latent_channels)
    if cross_attention_dim is not None:
        config["cross_attention_dim"] = int(cross_attention_dim)
    check_resolution(config, config["sample_size"])
    try:
        return UNet2DConditionModel(**config)
    except (TypeError, ValueError) as e:
        raise InputError(f"could not build a UNet2DConditionModel from {name_or_path!r}: {e}") from e


def build_text_encoder(name_or_path: str = "mini-sd", vocab_size: int = 1000, max_length: int = 16,
                       bos_token_id: int = 0, eos_token_id: int = 1, pad_token_id: int = 1):
    """A freshly initialised ``transformers.CLIPTextModel`` (the text tower of CLIP) for a given vocabulary."""
    if name_or_path not in TEXT_ENCODER_PRESETS:
        raise InputError(f"--text_encoder_config {name_or_path!r} is not a preset {sorted(TEXT_ENCODER_PRESETS)}")
    config = CLIPTextConfig(vocab_size=vocab_size, bos_token_id=bos_token_id, eos_token_id=eos_token_id,
                            pad_token_id=pad_token_id, **{**TEXT_ENCODER_PRESETS[name_or_path],
                                                          "max_position_embeddings": max_length})
    return CLIPTextModel(config)


def _preset_or_config(name_or_path: str, presets: dict, class_name: str, flag: str) -> dict:
    if name_or_path in presets:
        return dict(presets[name_or_path])
    path = Path(name_or_path)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise InputError(f"{flag} {name_or_path!r} is neither a preset {sorted(presets)} nor a {class_name} "
                         "config.json (or a folder holding one)")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{path} is not valid JSON ({e})") from e
    if config.get("_class_name", class_name) != class_name:
        raise InputError(f"{path} describes a {config['_class_name']}, not a {class_name}")
    return {k: v for k, v in config.items() if not k.startswith("_")}


def use_bmm_attention(model: torch.nn.Module) -> int:
    """Compute attention as plain batched matmuls (diffusers' ``AttnProcessor``) instead of torch's fused
    ``scaled_dot_product_attention``, for training on a CPU: in bf16 the fused CPU kernel's backward is the slowest
    op of a step (22% of a ``mnist-small`` step on a 2-core AMX Xeon), while the matmuls run on the bf16 units
    (1.28x the images/s of the whole step; the same in fp32). The arithmetic is the same softmax(QK^T/sqrt(d))V;
    nothing is saved with the weights. Returns how many attention modules were switched.

    A transformers model inside (the mini Stable Diffusion's ``CLIPTextModel``) gets the same: its ``"eager"``
    attention instead of ``"sdpa"``. With 77 tokens the fused kernel's backward was a quarter of a mini-SD step on a
    2-core AVX512-BF16 EPYC; the plain matmuls make the whole step 1.27x faster (1.76 -> 1.39 s at batch 256). The
    choice is not written into the saved config.json: a loaded pipeline uses transformers' default again."""
    switched = 0
    for module in model.modules():
        if isinstance(module, Attention):
            module.set_processor(AttnProcessor())
            switched += 1
        elif isinstance(module, PreTrainedModel) and module.config._attn_implementation != "eager":
            module.set_attn_implementation("eager")
            switched += module.config.num_hidden_layers
    return switched
