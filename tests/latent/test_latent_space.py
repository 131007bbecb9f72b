"""The latent-space lesson: DDIM inversion against the exact denoiser, slerp, and `sd-course latents` end to end."""

from __future__ import annotations

import json

import pytest
import torch

from sd_course.core.errors import InputError
from sd_course.latent.latent_space import ddim_generate, ddim_invert, slerp
from sd_course.pixel.pipeline import load_pipeline

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_ddim_inversion_round_trips_with_the_exact_denoiser():
    """Image -> x_T -> image with the exact denoiser of a two-Gaussian mixture (values well inside [-1, 1]).
    Measured: MSE 7.4e-3 (20 steps), 1.8e-3 (50), 1.6e-4 (200); the error is the ODE discretisation only."""
    pipe = load_pipeline("analytic:two-gaussians")
    x0 = pipe.unet.sample_data(8, torch.Generator().manual_seed(0)).float()
    errors = {}
    for steps in (20, 200):
        x_T = ddim_invert(pipe, x0, steps)
        back = ddim_generate(pipe, x_T, steps)
        errors[steps] = float((back - x0).pow(2).mean())
    assert errors[200] < 5e-4 and float((back - x0).abs().max()) < 0.1, errors
    assert errors[20] > 10 * errors[200]  # more steps, a more exact inverse: the map really is an ODE
    assert 0.8 < float(x_T.std()) < 1.2  # the code lives where the noise does: x_T ~ N(0, I)-like


def test_generation_from_a_code_is_deterministic_and_codes_differ():
    pipe = load_pipeline("analytic:two-gaussians")
    x_T = torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    a, b = ddim_generate(pipe, x_T, 10), ddim_generate(pipe, x_T, 10)
    assert torch.equal(a, b) and not torch.equal(a[0], a[1])


def test_slerp_keeps_the_norm_of_gaussian_noise():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1, 1, 28, 28, generator=g), torch.randn(1, 1, 28, 28, generator=g)
    assert torch.allclose(slerp(a, b, 0.0), a, atol=1e-5) and torch.allclose(slerp(a, b, 1.0), b, atol=1e-5)
    middle, straight = slerp(a, b, 0.5), 0.5 * (a + b)
    assert abs(float(middle.norm() / a.norm()) - 1) < 0.05  # stays on the shell where noise lives
    assert float(straight.norm() / a.norm()) < 0.8  # the straight line cuts through the middle (~1/sqrt 2)


def test_cli_latents_writes_the_figures_and_numbers(tmp_path, capsys):
    from sd_course.app.cli import main as cli
    from sd_course.core.models import build_vae

    torch.manual_seed(0)
    vae = build_vae("mnist-vae")
    vae.register_to_config(scaling_factor=0.5)
    vae.save_pretrained(tmp_path / "vae")
    out = tmp_path / "figures"
    assert cli(["latents", "--vae", str(tmp_path / "vae"), "--model", "analytic:mnist", "--num_eval", "20",
                "--num_digits", "3", "--num_inference_steps", "5", "--output_dir", str(out)]) == 0
    assert "784 pixels -> 256 latent numbers (3.06x)" in capsys.readouterr().out
    for name in ("channels.png", "interpolation.png", "ddim_inversion.png", "noise_path.png"):
        assert (out / name).stat().st_size > 1000, name
    numbers = json.loads((out / "latents.json").read_text())
    assert numbers["latents"]["scaling_factor"] == 0.5 and numbers["num_images"] == 20
    assert 0 < numbers["reconstruction"]["mse"] < 1 and "ddim_inversion" in numbers


def test_cli_latents_bad_input(tmp_path, capsys):
    from sd_course.app.cli import main as cli

    assert cli(["latents", "--vae", str(tmp_path), "--output_dir", str(tmp_path / "f")]) == 2
    assert "no config.json" in capsys.readouterr().err
    with pytest.raises(InputError, match="--num_eval must be positive"):
        from sd_course.latent.latent_space import write_latent_lesson

        write_latent_lesson(str(tmp_path), "none", str(tmp_path / "f"), num_eval=0)
