"""What the network predicts at each t, and the minimum of the training loss (sd_course/pixel/predictions.py)."""

import json

import pytest
import torch
from conftest import run_python
from diffusers import DDPMScheduler

from sd_course.core.errors import InputError
from sd_course.core.models import build_unet
from sd_course.core.shipped import find_shipped
from sd_course.pixel.predictions import (
    empirical_denoiser,
    expected_loss_given_x_t,
    loss_per_t,
    optimal_v,
    predicted_v,
    split_v,
    write_predictions_lesson,
)

TIMESTEPS = [0, 1, 50, 300, 500, 850, 999]


def cosine_v_scheduler():
    """The shipped model's training schedule: cosine betas, v-prediction."""
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction")


def draws(n=5, shape=(1, 8, 8), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, *shape), generator=g, dtype=torch.float64) * 2 - 1, torch.randn((n, *shape), generator=g,
                                                                                            dtype=torch.float64)


def training_set(k=6, seed=1):
    """k random 8x8 'digits' (uint8): far apart, as real digits are at this noise scale."""
    return torch.randint(0, 256, (k, 1, 8, 8), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


@pytest.mark.parametrize("t", TIMESTEPS)
def test_x0_and_eps_from_the_true_v_are_the_true_ones(t):
    scheduler = cosine_v_scheduler()
    x0, eps = draws()
    tt = torch.full((len(x0),), t)
    x_t, v = scheduler.add_noise(x0, eps, tt), scheduler.get_velocity(x0, eps, tt)  # steps 1 and 2, diffusers' signs
    implied = split_v(v, x_t, float(scheduler.alphas_cumprod[t]))  # steps 4 and 5
    torch.testing.assert_close(implied["x0"], x0, rtol=0, atol=1e-12)
    torch.testing.assert_close(implied["eps"], eps, rtol=0, atol=1e-12)


@pytest.mark.parametrize("t", TIMESTEPS)
def test_the_errors_in_v_eps_and_x0_differ_by_abar_and_one_minus_abar(t):
    scheduler = cosine_v_scheduler()
    x0, eps = draws()
    tt = torch.full((len(x0),), t)
    x_t, v = scheduler.add_noise(x0, eps, tt), scheduler.get_velocity(x0, eps, tt)
    abar = float(scheduler.alphas_cumprod[t])
    v_hat = torch.randn(x0.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)  # any "model"
    implied = split_v(v_hat, x_t, abar)
    v_mse = float((v - v_hat).pow(2).mean())
    assert float((eps - implied["eps"]).pow(2).mean()) == pytest.approx(abar * v_mse, rel=1e-9, abs=1e-15)
    assert float((x0 - implied["x0"]).pow(2).mean()) == pytest.approx((1 - abar) * v_mse, rel=1e-9, abs=1e-15)
    # an eps- or x0-model's output, converted to v: the same v
    torch.testing.assert_close(predicted_v(implied["eps"], x_t, abar, "epsilon"), v_hat, rtol=0, atol=1e-6)
    torch.testing.assert_close(predicted_v(implied["x0"], x_t, abar, "sample"), v_hat, rtol=0, atol=1e-6)


def test_the_exact_denoiser_of_a_training_set_memorises_it():
    scheduler = cosine_v_scheduler()
    train = training_set()
    denoiser = empirical_denoiser(train, scheduler)
    x0 = denoiser.means.reshape(-1, 1, 8, 8).float().repeat(3, 1, 1, 1)
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    losses = loss_per_t(denoiser, scheduler, x0, [0, 10, 50, 100], eps)
    assert max(losses) < 1e-6  # it returns the right training image exactly: zero loss
    outside = torch.rand((4, 1, 8, 8), generator=torch.Generator().manual_seed(3)) * 2 - 1
    assert loss_per_t(denoiser, scheduler, outside, [0], eps[:4])[0] > 100  # ...and the nearest one for a new image


@pytest.mark.parametrize("t", TIMESTEPS)
def test_the_exact_denoiser_is_below_any_network_at_every_x_t(t):
    """Step 9: averaged exactly over which training image made x_t, the exact denoiser's loss is below that of any
    function, at every single x_t, by ||E[v | x_t] - f||^2 (no sampling error: this cannot flake)."""
    torch.manual_seed(0)
    scheduler = cosine_v_scheduler()
    denoiser = empirical_denoiser(training_set(), scheduler)
    unet = build_unet("tiny", resolution=8, channels=1).eval()
    x0 = denoiser.means.reshape(-1, 1, 8, 8).repeat(2, 1, 1, 1)  # x_t drawn from the training distribution
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    tt = torch.full((len(x0),), t)
    x_t = scheduler.add_noise(x0, eps, tt)
    abar = float(scheduler.alphas_cumprod[t])
    best = optimal_v(denoiser, x_t, abar)  # E[v | x_t], float64
    with torch.no_grad():
        others = {"tiny U-Net": unet(x_t.float(), tt).sample.double(),
                  "random": torch.randn(x0.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64),
                  "zero": torch.zeros_like(x0)}
    floor = expected_loss_given_x_t(best, x_t, abar, denoiser)
    assert floor.shape == (len(x0),) and (floor >= -1e-9).all()
    for name, f in others.items():
        loss = expected_loss_given_x_t(f, x_t, abar, denoiser)
        gap = (best - f).pow(2).reshape(len(x0), -1).mean(1)
        assert (floor <= loss).all(), name
        torch.testing.assert_close(loss - floor, gap, rtol=1e-6, atol=1e-6)


def test_expected_loss_needs_the_denoiser_of_a_training_set():
    from sd_course.pixel.analytic import GaussianMixtureDenoiser

    blurred = GaussianMixtureDenoiser.from_images(training_set(), std=0.05, scheduler=cosine_v_scheduler())
    with pytest.raises(InputError, match="stds 0"):
        expected_loss_given_x_t(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8), 0.5, blurred)


def test_a_digit_index_outside_the_digits_is_one_clear_error(tmp_path):
    with pytest.raises(InputError, match="--digit_index must be in 0..3"):
        write_predictions_lesson(output_dir=tmp_path, num_digits=4, digit_index=4)


@pytest.mark.skipif(find_shipped("pipelines/ddpm-mnist") is None, reason="the shipped pixel model is not installed")
def test_the_lesson_runs_on_the_shipped_model(tmp_path):
    torch.manual_seed(0)
    numbers = write_predictions_lesson(output_dir=tmp_path, num_digits=2, num_draws=1, timesteps="0,500,999",
                                       loss_timesteps="0,500", device="cpu")
    assert {p.name for p in tmp_path.iterdir()} == {"predictions.png", "loss_per_t.png", "predictions.json"}
    written = json.loads((tmp_path / "predictions.json").read_text())
    assert written["provenance"]["inputs"] and written["loss_per_t"] == numbers["loss_per_t"]
    at_0 = numbers["loss_per_t"][0]
    assert numbers["prediction_type"] == "v_prediction" and numbers["mixture"]["num_images"] == 1998
    assert at_0["optimal_train"] < 1e-6 < at_0["network_train"]  # the memoriser is exact on its own digits...
    assert at_0["optimal_heldout"] > 100 * at_0["network_heldout"]  # ...and far off on any other digit
    for row in numbers["predictions"]["rows"]:  # step 6, measured
        assert row["eps_mse"] == pytest.approx(row["alpha_bar"] * row["v_mse"], rel=1e-3, abs=1e-9)
        assert row["x0_mse"] == pytest.approx((1 - row["alpha_bar"]) * row["v_mse"], rel=1e-3, abs=1e-9)


@pytest.mark.skipif(find_shipped("pipelines/ddpm-mnist") is None, reason="the shipped pixel model is not installed")
def test_the_command_writes_the_lesson_in_a_fresh_process(tmp_path):
    result = run_python(["-m", "sd_course", "predictions", "--output_dir", str(tmp_path / "out"), "--num_digits", "2",
                         "--num_draws", "1", "--timesteps", "0,999", "--loss_timesteps", "0,999", "--device", "cpu"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert "wrote" in result.stdout
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"predictions.png", "loss_per_t.png", "predictions.json"}
    bad = run_python(["-m", "sd_course", "predictions", "--output_dir", str(tmp_path / "bad"), "--num_digits", "0"])
    assert bad.returncode == 2 and "--num_digits" in bad.stderr and "Traceback" not in bad.stderr
