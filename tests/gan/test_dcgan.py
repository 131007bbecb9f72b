"""The GAN baseline: a real tiny DCGAN trained under the one loop, saved as safetensors, sampled and scored by the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import REPO, as_flags
from safetensors.torch import load_file

from sd_course.app import cli
from sd_course.app.launch import main
from sd_course.core.errors import InputError
from sd_course.evaluate.metrics import FEATURE_NAME
from sd_course.gan.dcgan import (
    GAN,
    DCGANDiscriminator,
    DCGANGenerator,
    GANForTraining,
    generate,
    is_gan,
    load_generator,
)

ENTRY = str(REPO / "training" / "train_gan.py")
BUILTIN = "builtin:mnist-2k:train"


def gan_args(output_dir, **overrides) -> list[str]:
    """A tiny DCGAN run on the 2,000 digits shipped with the package: a few steps of narrow networks."""
    values = dict(generator_width=8, discriminator_width=8, latent_dim=16, max_train_samples=96, train_batch_size=16,
                  max_train_steps=8, checkpointing_steps=0, save_model_epochs=0, save_images_epochs=0, logger="none",
                  output_dir=str(output_dir))
    values.update(overrides)
    return as_flags(values)


def train_gan(argv):
    return main(argv, objective_class=GAN)


def weights(folder: Path) -> dict:
    return load_file(str(folder / "diffusion_pytorch_model.safetensors"))


@pytest.fixture(scope="module")
def trained_gan(tmp_path_factory):
    out = tmp_path_factory.mktemp("gan") / "run"
    train_gan(gan_args(out, max_train_steps=12, save_images_epochs=1))
    return out


def test_trains_under_the_loop_and_saves_the_generator_as_safetensors(trained_gan):
    out = trained_gan
    records = [json.loads(line) for line in (out / "logs" / "loss.jsonl").read_text().splitlines()]
    assert len(records) == 12 and {"loss_d", "loss_g", "d_real", "d_fake"} <= set(records[0])
    assert all(r["loss"] == pytest.approx(r["loss_d"] + r["loss_g"], rel=1e-5) for r in records)
    assert (out / "samples" / "epoch-0002.png").is_file()
    assert is_gan(out) and not list(out.glob("*.bin")) and not list(out.glob("*.pt"))
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["objective"] == "train_gan"
    saved = weights(out)
    assert all(key.startswith("net.") for key in saved)  # the generator alone: no discriminator weights shipped
    generator = load_generator(out)
    assert generator.config.latent_dim == 16 and generator.config.sample_size == 28


def test_each_player_gets_the_gradient_of_its_own_loss_only():
    torch.manual_seed(0)
    model = GANForTraining(DCGANGenerator(16, 8), DCGANDiscriminator(8))
    real, z = torch.rand(4, 1, 28, 28) * 2 - 1, torch.randn(4, 16)
    loss_d, loss_g, _, _ = model(real, z)
    loss_g.backward(retain_graph=True)
    assert all(p.grad is None or not p.grad.any() for p in model.discriminator.parameters())  # G's loss: not into D
    assert any(p.grad is not None and p.grad.any() for p in model.generator.parameters())
    model.zero_grad(set_to_none=True)
    loss_d.backward()
    assert all(p.grad is None or not p.grad.any() for p in model.generator.parameters())  # D's loss: not into G
    assert any(p.grad is not None and p.grad.any() for p in model.discriminator.parameters())


def test_samples_depend_on_the_seed_not_the_batch_size(trained_gan):
    generator = load_generator(trained_gan)
    a = generate(generator, 10, seed=3, batch_size=10)
    b = generate(generator, 10, seed=3, batch_size=3)
    assert a.dtype == torch.uint8 and a.shape == (10, 1, 28, 28) and torch.equal(a, b)
    assert not torch.equal(a, generate(generator, 10, seed=4))
    assert not generator.training


def test_cli_samples_and_scores_a_gan_like_a_diffusion_model(trained_gan, tmp_path):
    samples = tmp_path / "samples"
    assert cli.main(["sample", "--model", str(trained_gan), "--num_images", "12", "--output_dir", str(samples),
                     "--output", str(tmp_path / "grid.png")]) == 0
    assert len(list(samples.glob("*.png"))) == 12 and (tmp_path / "grid.png").is_file()
    out = tmp_path / "metrics.json"
    assert cli.main(["evaluate", "--samples", str(samples), "--reference", BUILTIN, "--num_reference", "100",
                     "--output_json", str(out)]) == 0
    from_folder = json.loads(out.read_text())
    assert cli.main(["evaluate", "--model", str(trained_gan), "--num_samples", "12", "--reference", BUILTIN,
                     "--num_reference", "100", "--output_json", str(out)]) == 0
    from_model = json.loads(out.read_text())
    fid = f"fid_{FEATURE_NAME}"
    assert from_model["num_inference_steps"] == 1 and from_model["source"] == "model"
    assert from_model[fid] == pytest.approx(from_folder[fid], rel=1e-4)  # the same 12 images (PNG is lossless)


def test_bad_input_is_refused_with_the_fix(trained_gan, tmp_path, capsys):
    assert cli.main(["sample", "--model", str(trained_gan), "--scheduler", "ddim"]) == 2
    assert "samples in one network call" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        train_gan(gan_args(tmp_path / "ema", use_ema=True))
    assert e.value.code == 2 and "BatchNorm" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_gan(gan_args(tmp_path / "odd", resolution=30))
    assert "multiple of 4" in capsys.readouterr().err
    with pytest.raises(InputError, match="not a DCGAN generator"):
        load_generator(tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((trained_gan / "config.json").read_text())
    (broken / "diffusion_pytorch_model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(InputError, match="missing or corrupt"):
        load_generator(broken)


def test_the_shipped_config_is_valid():
    from sd_course.gan.dcgan import GANConfig
    from sd_course.train.config import parse_args

    cfg = parse_args(["--config", str(REPO / "training" / "configs" / "gan-mnist.yaml")], GANConfig)
    cfg.validate()
    assert (cfg.learning_rate, cfg.adam_beta1, cfg.use_ema) == (2e-4, 0.5, False)
