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
from sd_course.core.data import load_images, to_model_range
from sd_course.core.digit_cnn import load_digit_cnn
from sd_course.evaluate.classifier import DEFAULT_CLASSIFIER_DIR
from sd_course.latent.autoencoder import (
    DEFAULT_PERCEPTUAL_NETWORK,
    Autoencoder,
    VAEConfig,
    adaptive_weight,
    compute_scaling_factor,
    decode,
    encode,
    latent_shape,
    load_vae,
    perceptual_distance,
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


# ---------------------------------------------------------------------------------------------------------------
# Stable Diffusion's autoencoder recipe: the perceptual and adversarial terms
# ---------------------------------------------------------------------------------------------------------------


def test_perceptual_distance_grows_with_blur_and_reaches_only_the_reconstruction():
    network = load_digit_cnn(DEFAULT_PERCEPTUAL_NETWORK)
    digits, _ = load_images("builtin:mnist-2k:train", resolution=28, num_images=16, show_progress=False)
    x = torch.nn.functional.pad(to_model_range(digits), (2, 2, 2, 2), value=-1.0)  # 32x32, as the VAE sees them
    assert perceptual_distance(network, x, x).item() == pytest.approx(0.0, abs=1e-6)
    blur = torch.nn.functional.avg_pool2d
    light, heavy = blur(x, 3, 1, 1), blur(blur(blur(x, 3, 1, 1), 3, 1, 1), 3, 1, 1)
    assert 0 < perceptual_distance(network, x, light) < perceptual_distance(network, x, heavy)
    x_rec = light.clone().requires_grad_(True)
    perceptual_distance(network, x, x_rec).backward()
    assert x_rec.grad.abs().sum() > 0 and all(p.grad is None for p in network.parameters())  # frozen
    metrics_net = load_digit_cnn(DEFAULT_CLASSIFIER_DIR)  # a different network from the metrics' judge
    assert not torch.equal(metrics_net.blocks[0].weight, network.blocks[0].weight)


def test_adaptive_weight_balances_the_two_gradients_at_the_last_layer():
    weight = torch.randn(3, 3, requires_grad=True)
    a, b = torch.randn(3, 3), torch.randn(3, 3)
    loss_rec, loss_adv = (weight * a).sum(), 10 * (weight * b).sum()  # gradients a and 10 b
    lam = adaptive_weight(loss_rec, loss_adv, weight)
    assert lam.item() == pytest.approx(a.norm().item() / (10 * b.norm().item() + 1e-4), rel=1e-5)
    assert not lam.requires_grad


def test_perceptual_and_adversarial_terms_switch_on_after_their_warm_up(tmp_path):
    out = tmp_path / "run"
    train_vae(vae_args(out, max_train_steps=6, perceptual_weight=1.0, perceptual_start=2, adversarial_weight=0.5,
                       adversarial_start=4, discriminator_width=8))
    records = [json.loads(line) for line in (out / "logs" / "loss.jsonl").read_text().splitlines()]
    assert [r["adaptive_weight"] > 0 for r in records] == [False] * 4 + [True] * 2
    assert all({"perceptual", "adversarial", "loss_d"} <= set(r) for r in records)
    # the loss is the sum of the terms that are on (steps 1-2: reconstruction + KL; 3-4: + perceptual; then all)
    for r in records[:2]:
        assert r["loss"] == pytest.approx(r["reconstruction"] + 1e-6 * r["kl"], rel=1e-4)
    for r in records[2:4]:
        assert r["loss"] == pytest.approx(r["reconstruction"] + r["perceptual"] + 1e-6 * r["kl"], rel=1e-4)
    saved = weights(out)
    assert not any(k.startswith(("discriminator", "layers")) for k in saved)  # users load the autoencoder alone
    assert set(saved) == set(weights_of_a_plain_vae(tmp_path))


def weights_of_a_plain_vae(tmp_path) -> dict:
    out = tmp_path / "plain"
    train_vae(vae_args(out, max_train_steps=1))
    return weights(out)


def test_bad_perceptual_and_adversarial_values(tmp_path):
    with pytest.raises(InputError, match="--adversarial_weight must be >= 0"):
        parse_args(vae_args(tmp_path / "a", adversarial_weight=-0.5), VAEConfig).validate()
    with pytest.raises(InputError, match="--perceptual_start"):
        parse_args(vae_args(tmp_path / "b", perceptual_start=-1), VAEConfig).validate()
    cfg = parse_args(vae_args(tmp_path / "c", perceptual_weight=1.0, perceptual_network=str(tmp_path)), VAEConfig)
    with pytest.raises(InputError, match="no perceptual network in .*--perceptual_network DIR"):
        train(cfg, Autoencoder(cfg))


# ---------------------------------------------------------------------------------------------------------------
# A sharper decoder for latents that stay the same (--pretrained_vae, --train_parts decoder)
# ---------------------------------------------------------------------------------------------------------------


def test_decoder_fine_tuning_keeps_the_encoder_and_its_scaling_factor(tmp_path, trained_vae):
    out = tmp_path / "decoder"
    train_vae(vae_args(out, pretrained_vae=str(trained_vae), train_parts="decoder", max_train_steps=4,
                       perceptual_weight=1.0, adversarial_weight=0.5, adversarial_start=2, discriminator_width=8))
    before, after = weights(trained_vae), weights(out)
    assert set(before) == set(after)
    encoder = [k for k in before if k.startswith(("encoder.", "quant_conv."))]
    decoder = [k for k in before if k.startswith(("decoder.", "post_quant_conv."))]
    assert encoder and decoder and len(encoder) + len(decoder) == len(before)
    assert all(torch.equal(before[k], after[k]) for k in encoder)  # q(z | x) bit for bit: the latents stay valid
    assert sum(not torch.equal(before[k], after[k]) for k in decoder) > len(decoder) // 2  # the decoder learnt
    factor = lambda folder: json.loads((folder / "config.json").read_text())["scaling_factor"]  # noqa: E731
    assert factor(out) == factor(trained_vae)  # what the latent models were trained with, not re-measured


def test_a_whole_autoencoder_can_go_on_from_a_trained_one(tmp_path, trained_vae):
    out = tmp_path / "more"
    train_vae(vae_args(out, pretrained_vae=str(trained_vae), max_train_steps=2))
    before, after = weights(trained_vae), weights(out)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("encoder."))
    first = json.loads((out / "logs" / "loss.jsonl").read_text().splitlines()[0])
    fresh = json.loads((trained_vae / "logs" / "loss.jsonl").read_text().splitlines()[0])
    assert first["reconstruction"] < fresh["reconstruction"]  # it starts where the trained one stopped


def test_bad_fine_tuning_values(tmp_path, trained_vae):
    with pytest.raises(InputError, match="--train_parts decoder .* needs a trained one: pass --pretrained_vae"):
        parse_args(vae_args(tmp_path / "a", train_parts="decoder"), VAEConfig).validate()
    with pytest.raises(InputError, match="--pretrained_vae .* no config.json there"):
        cfg = parse_args(vae_args(tmp_path / "b", pretrained_vae=str(tmp_path)), VAEConfig)
        train(cfg, Autoencoder(cfg))
    with pytest.raises(InputError, match="reads 1-channel images in multiples of 2 pixels, .* 15x15"):
        cfg = parse_args(vae_args(tmp_path / "c", pretrained_vae=str(trained_vae), resolution=15), VAEConfig)
        train(cfg, Autoencoder(cfg))
