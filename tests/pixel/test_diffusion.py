"""How t is drawn per image (sd_course/pixel/diffusion.py: draw_timesteps, --timestep_sampling), and the sampler of
the grids saved during training (--validation_scheduler)."""

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import tiny_run_args
from sd_course.app.launch import main
from sd_course.core.errors import InputError
from sd_course.pixel.diffusion import TIMESTEP_SAMPLINGS, DiffusionConfig, PixelDiffusion, draw_timesteps
from sd_course.train.config import parse_args


@pytest.mark.parametrize("sampling", TIMESTEP_SAMPLINGS)
def test_every_law_draws_valid_timesteps_reproducibly(sampling):
    draw = lambda: draw_timesteps(4096, 1000, torch.Generator().manual_seed(0), sampling)  # noqa: E731
    t = draw()
    assert t.dtype == torch.long and t.shape == (4096,) and 0 <= t.min() and t.max() <= 999
    assert torch.equal(t, draw())


def test_stratified_puts_one_draw_in_each_slice_of_the_batch():
    t = draw_timesteps(8, 1000, torch.Generator().manual_seed(1), "stratified")
    assert sorted((t // 125).tolist()) == list(range(8))  # one t in each eighth of [0, 1000)
    assert (t // 125).tolist() != list(range(8))  # ...in random order


def test_logit_normal_draws_the_middle_more_often_than_the_ends():
    g = torch.Generator().manual_seed(0)
    uniform, logit_normal = (draw_timesteps(20000, 1000, g, s) for s in ("uniform", "logit_normal"))
    middle = lambda t: ((t >= 250) & (t < 750)).float().mean().item()  # noqa: E731
    assert middle(uniform) == pytest.approx(0.5, abs=0.02)
    assert middle(logit_normal) == pytest.approx(0.729, abs=0.02)  # P(|n| < logit(0.75) = ln 3), n ~ N(0, 1)


def test_an_unknown_law_is_one_clear_error():
    with pytest.raises(InputError, match="--timestep_sampling must be one of uniform, stratified, logit_normal"):
        draw_timesteps(4, 1000, torch.Generator(), "lognormal")
    with pytest.raises((InputError, SystemExit)):
        parse_args(["--output_dir", "x", "--timestep_sampling", "lognormal"], DiffusionConfig)


def test_the_sample_grids_are_drawn_by_the_sampler_the_recipe_names(tmp_path):
    """--validation_scheduler reaches the grids saved during training: the same weights and seeds drawn by DDIM and
    by DPM++ 2M SDE give different grids; a misspelt sampler is refused before anything is loaded."""
    grids = {}
    for sampler in ("ddim", "dpm++-2m-sde"):
        out = tmp_path / sampler
        main(tiny_run_args(out, max_train_steps=4, save_images_epochs=1, validation_scheduler=sampler),
             objective_class=PixelDiffusion)
        grids[sampler] = np.asarray(Image.open(out / "samples" / "epoch-0001.png"))
    assert grids["ddim"].shape == grids["dpm++-2m-sde"].shape
    assert not np.array_equal(grids["ddim"], grids["dpm++-2m-sde"])
    with pytest.raises(InputError, match=r"--validation_scheduler: unknown scheduler 'dpm\+\+2'; use one of"):
        parse_args(["--validation_scheduler", "dpm++2"], DiffusionConfig).validate()
