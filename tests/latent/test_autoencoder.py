"""The digit autoencoder: a real tiny AutoencoderKL trained under the one loop, saved, loaded by plain diffusers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import REPO, as_flags, run_python
from safetensors.torch import load_file

from sd_course.app.launch import main
from sd_course.core.errors import InputError
from sd_course.core.models import build_unet, build_vae
from sd_course.latent.autoencoder import (
    Autoencoder,
    VAEConfig,
    compute_scaling_factor,
    decode,
    encode,
    latent_shape,
    load_vae,
    prepare_images,
)
from sd_course.train.config import parse_args
from sd_course.train.loop import train

ENTRY = str(REPO / "training" / "train_vae.py")


def vae_args(output_dir, **overrides) -> list[str]:
    """A tiny VAE run: 16x16 digits from the package, 8x8 latents, a few steps."""
    values = dict(vae_config_name_or_path="tiny-vae", resolution=16, resize_mode="resize", max_train_samples=64,
                  train_batch_size=16, max_train_steps=6, learning_rate=2e-3, lr_warmup_steps=0, checkpointing_steps=0,
                  save_model_epochs=0, save_images_epochs=0, logger="none", output_dir=str(output_dir))
    values.update(overrides)
    return as_flags(values)


def train_vae(argv):
    from sd_course.latent.autoencoder import Autoencoder

    return main(argv, objective_class=Autoencoder)


def weights(folder: Path) -> dict:
    return load_file(str(folder / "diffusion_pytorch_model.safetensors"))


@pytest.fixture(scope="module")
def trained_vae(tmp_path_factory):
    out = tmp_path_factory.mktemp("vae") / "run"
    train_vae(vae_args(out, max_train_steps=12, save_images_epochs=1))
    return out


def test_trains_saves_and_loads_with_plain_diffusers(trained_vae):
    out = trained_vae
    records = [json.loads(line) for line in (out / "logs" / "loss.jsonl").read_text().splitlines()]
    assert len(records) == 12 and {"reconstruction", "kl"} <= set(records[0])
    assert records[-1]["reconstruction"] < records[0]["reconstruction"]  # it learns to reconstruct
    assert (out / "samples" / "epoch-0003.png").is_file()
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["objective"] == "train_vae" and summary["latent_shape"] == [4, 8, 8]
    code = (
        "import sys, torch; from diffusers import AutoencoderKL; "
        f"vae = AutoencoderKL.from_pretrained({str(out)!r}); "
        "z = vae.encode(torch.zeros(2, 1, 16, 16)).latent_dist.mean; x = vae.decode(z).sample; "
        "assert not any(m.startswith('sd_course') for m in sys.modules); "
        "print(tuple(z.shape), tuple(x.shape), vae.config.scaling_factor)"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-2000:]
    factor = float(result.stdout.split()[-1])
    assert "(2, 4, 8, 8)" in result.stdout and "(2, 1, 16, 16)" in result.stdout
    assert factor == pytest.approx(summary["scaling_factor"])


def test_scaling_factor_gives_unit_variance_latents(trained_vae):
    from sd_course.core.data import load_images

    vae = load_vae(trained_vae)
    images, _ = load_images("builtin:mnist-2k:train", resolution=16, num_images=64, show_progress=False)
    x = prepare_images(images, vae)
    factor = vae.config.scaling_factor
    assert factor == pytest.approx(compute_scaling_factor(vae, x), rel=1e-4)  # what training stored, from the data
    scaled = encode(vae, x, sample=True, generator=torch.Generator().manual_seed(0))
    assert float(scaled.std()) == pytest.approx(1.0, abs=0.05)
    assert decode(vae, scaled).shape == (64, 1, 16, 16)
    assert latent_shape(vae, 16) == (4, 8, 8)


def test_digit_preset_makes_4x8x8_latents_of_32x32_digits():
    vae = build_vae("mnist-vae")
    with torch.no_grad():
        z = vae.encode(torch.zeros(1, 1, 32, 32)).latent_dist.mean
    assert tuple(z.shape) == (1, 4, 8, 8) and latent_shape(vae, 32) == (4, 8, 8)
    x = prepare_images(torch.zeros(3, 1, 28, 28, dtype=torch.uint8), vae)  # 28x28 digits are padded to 32x32
    assert x.shape == (3, 1, 32, 32) and float(x[0, 0, 0, 0]) == -1.0


# ---------------------------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------------------------


def test_images_of_other_sizes_and_channels_are_refused_with_the_fix():
    vae = build_vae("mnist-vae")
    with pytest.raises(InputError, match="resize the image to 28x28 or 32x32"):
        prepare_images(torch.zeros(1, 1, 30, 31, dtype=torch.uint8), vae)
    with pytest.raises(InputError, match="resize"):
        prepare_images(torch.zeros(1, 1, 64, 64, dtype=torch.uint8), vae)
    with pytest.raises(InputError, match="grayscale"):
        prepare_images(torch.zeros(1, 3, 28, 28, dtype=torch.uint8), vae)


def test_folders_that_are_not_a_vae(tmp_path, trained_vae):
    with pytest.raises(InputError, match="no config.json"):
        load_vae(tmp_path)
    build_unet("tiny").save_pretrained(tmp_path / "unet")
    with pytest.raises(InputError, match="holds a UNet2DModel, not an AutoencoderKL"):
        load_vae(tmp_path / "unet")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((trained_vae / "config.json").read_text())
    (broken / "diffusion_pytorch_model.safetensors").write_bytes(b"\x00" * 64)  # a copy cut short
    with pytest.raises(InputError, match="corrupt"):
        load_vae(broken)


def test_bad_training_values(tmp_path):
    with pytest.raises(InputError, match="--kl_weight"):
        cfg = parse_args(vae_args(tmp_path / "a", kl_weight=-1), VAEConfig)
        train(cfg, Autoencoder(cfg))
    with pytest.raises(InputError, match="multiple of the VAE's down-sampling factor"):

        cfg = parse_args(vae_args(tmp_path / "b", resolution=15), VAEConfig)
        train(cfg, Autoencoder(cfg))
