"""Sampling: every scheduler against the exact denoiser, the stock DDPMPipeline's bugs, real saved folders, bad input.

The correctness tests need no trained model: for data x_0 ~ N(mu, s^2 I) (or a mixture of two such Gaussians) the
best possible denoiser is known in closed form (sd_course/pixel/analytic.py), so a right sampler must return samples whose
mean and std are mu and s, up to the sampler's own discretisation error. Tolerances (pixel values in [-1, 1]):

* at the scheduler's usual step count (1000 DDPM, 50 DDIM/Euler/PNDM/LMS/EDM, 25 for the rest):
  |mean - mu| < 0.05 and |std / s - 1| < 0.25; for the mixture |weight - 0.3| < 0.1 and component means within 0.05.
  Measured worst cases of a right pipeline: std -16% (Euler-ancestral, 50 steps), +16% (KDPM2-ancestral, 25 steps).
  The stock DDPMPipeline's Euler gives std +233% (saturated noise) and EDM-Euler -97%.
* converged (250 steps; DDPM 1000): |mean - mu| < 0.02 and |std / s - 1| < 0.07 (measured worst: Euler-a -4.2%),
  which catches subtle errors such as a wrong noise schedule (Heun with diffusers' default betas is off by more).
"""

from __future__ import annotations

import json
import logging
import warnings
from contextlib import contextmanager

import diffusers
import pytest
import torch
from conftest import run_python
from diffusers import DDPMPipeline, DDPMScheduler, HeunDiscreteScheduler

from sd_course.core.errors import InputError
from sd_course.core.models import build_unet
from sd_course.core.schedulers import (
    SCHEDULERS,
    check_scheduler_settings,
    make_scheduler,
    scheduler_info,
)
from sd_course.pixel.analytic import GaussianMixtureDenoiser
from sd_course.pixel.pipeline import (
    UnconditionalImagePipeline,
    default_model_path,
    generate,
    load_pipeline,
    num_model_calls,
    record_trajectory,
)

# diffusers' schedulers call numpy in ways numpy 2 deprecates; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

MU, S = 0.1, 0.3  # the Gaussian: N(0.1, 0.3^2) per pixel, well inside [-1, 1] (no clipping)
N = 256  # images of 1x8x8: 16,384 pixel values, so the std is measured to ~0.6%
USUAL_MEAN_TOL, USUAL_STD_TOL = 0.05, 0.25
CONVERGED_STEPS, CONVERGED_MEAN_TOL, CONVERGED_STD_TOL = 250, 0.02, 0.07
MIX_WEIGHT_TOL, MIX_MEAN_TOL = 0.1, 0.05
ALIASES = [info.alias for info in SCHEDULERS]
NO_GENERATOR_TYPEERROR = {"pndm", "lms", "heun", "kdpm2", "deis", "unipc"}  # stock DDPMPipeline raises TypeError
STOCK_WRONG = {"euler", "euler-a", "kdpm2-a", "edm-euler"}  # stock DDPMPipeline runs but is wrong
STOCK_RIGHT = {"ddim", "dpm++", "dpm++-2m-sde", "dpm-single"}  # (and ddpm; its 1000 steps are tested below with ours)

try:
    import torchsde  # noqa: F401

    HAVE_TORCHSDE = True
except ImportError:
    HAVE_TORCHSDE = False


# ----------------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------------


def training_scheduler(prediction_type="epsilon"):
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", prediction_type=prediction_type)


def gaussian(prediction_type="epsilon"):
    return GaussianMixtureDenoiser.gaussian(MU, S, image_shape=(1, 8, 8), scheduler=training_scheduler(prediction_type))


def mixture():
    return GaussianMixtureDenoiser.two_gaussians(means=(0.4, -0.4), stds=(0.15, 0.15), weights=(0.3, 0.7),
                                                 image_shape=(1, 8, 8), scheduler=training_scheduler())


def sample_with(pipe_cls, denoiser, scheduler, steps, n=N, seed=0, swap=True):
    """Samples in [-1, 1] (float). As users do: build the pipeline with the training scheduler, then swap
    ``pipe.scheduler = scheduler`` (``swap=False``: build it with ``scheduler`` directly)."""
    if swap:
        pipe = pipe_cls(unet=denoiser, scheduler=training_scheduler(denoiser.config.prediction_type))
        pipe.scheduler = scheduler
    else:
        pipe = pipe_cls(unet=denoiser, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    images = pipe(batch_size=n, generator=torch.Generator().manual_seed(seed), num_inference_steps=steps,
                  output_type="pt").images
    return torch.as_tensor(images) * 2 - 1


def gaussian_errors(x):
    return abs(float(x.mean()) - MU), abs(float(x.std()) / S - 1)


def scheduler_for(alias, prediction_type="epsilon"):
    if alias == "dpm++-sde" and not HAVE_TORCHSDE:
        pytest.skip("torchsde not installed (pip install 'sd_course[sde]'); test_sde_needs_torchsde covers this case")
    return make_scheduler(alias, training_scheduler(prediction_type).config)


def usual_steps(alias):
    return next(info.default_steps for info in SCHEDULERS if info.alias == alias)


@contextmanager
def diffusers_warnings():
    """Collect diffusers' logger warnings and Python warnings raised inside the block."""
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    logger = logging.getLogger("diffusers")
    handler = Keep(level=logging.WARNING)
    logger.addHandler(handler)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield records
    logger.removeHandler(handler)
    records.extend(str(w.message) for w in caught if "diffusers" in str(w.filename) or "sd_course" in str(w.filename))


@pytest.fixture(scope="module")
def ddpm_folder(tmp_path_factory):
    """A folder saved the way training saves it: DDPMPipeline(unet, DDPMScheduler).save_pretrained(dir)."""
    folder = tmp_path_factory.mktemp("ddpm") / "pipe"
    torch.manual_seed(0)
    unet = build_unet("tiny", resolution=16, channels=1)
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=100)).save_pretrained(folder)
    return folder


# ----------------------------------------------------------------------------------------------------------------
# 1. Every scheduler is right with the exact denoiser
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("alias", ALIASES)
def test_every_scheduler_samples_the_gaussian_and_the_mixture_at_its_usual_steps(alias):
    scheduler = scheduler_for(alias)
    steps = usual_steps(alias)
    mean_err, std_err = gaussian_errors(sample_with(UnconditionalImagePipeline, gaussian(), scheduler, steps))
    assert mean_err < USUAL_MEAN_TOL and std_err < USUAL_STD_TOL, (alias, mean_err, std_err)

    mix = mixture()
    x = sample_with(UnconditionalImagePipeline, mix, scheduler, steps)
    component = mix.component_of(x)
    weight = float((component == 0).float().mean())
    assert abs(weight - 0.3) < MIX_WEIGHT_TOL, (alias, weight)
    assert abs(float(x[component == 0].mean()) - 0.4) < MIX_MEAN_TOL
    assert abs(float(x[component == 1].mean()) + 0.4) < MIX_MEAN_TOL


@pytest.mark.parametrize("alias", [a for a in ALIASES if a not in ("ddpm", "dpm++-sde")])
def test_every_scheduler_converges_to_the_exact_distribution(alias):
    x = sample_with(UnconditionalImagePipeline, gaussian(), scheduler_for(alias), CONVERGED_STEPS)
    mean_err, std_err = gaussian_errors(x)
    assert mean_err < CONVERGED_MEAN_TOL and std_err < CONVERGED_STD_TOL, (alias, mean_err, std_err)


def test_ddpm_1000_steps_is_exact():
    x = sample_with(UnconditionalImagePipeline, gaussian(), scheduler_for("ddpm"), 1000)
    mean_err, std_err = gaussian_errors(x)
    assert mean_err < CONVERGED_MEAN_TOL and std_err < CONVERGED_STD_TOL, (mean_err, std_err)


@pytest.mark.parametrize("alias", ["ddim", "euler", "heun", "dpm++", "unipc", "edm-euler", "lms"])
def test_v_prediction_models(alias):
    x = sample_with(UnconditionalImagePipeline, gaussian("v_prediction"), scheduler_for(alias, "v_prediction"),
                    usual_steps(alias))
    mean_err, std_err = gaussian_errors(x)
    assert mean_err < USUAL_MEAN_TOL and std_err < USUAL_STD_TOL, (alias, mean_err, std_err)


@pytest.mark.parametrize("alias", ["ddim", "euler", "heun", "dpm++", "unipc", "edm-euler"])
def test_sample_prediction_models(alias):
    x = sample_with(UnconditionalImagePipeline, gaussian("sample"), scheduler_for(alias, "sample"),
                    usual_steps(alias))
    mean_err, std_err = gaussian_errors(x)
    assert mean_err < USUAL_MEAN_TOL and std_err < USUAL_STD_TOL, (alias, mean_err, std_err)


@pytest.mark.parametrize("alias", ["pndm", "euler-a"])
def test_schedulers_without_sample_prediction_say_so(alias):
    with pytest.raises(InputError, match="prediction_type 'sample'.*use another scheduler"):
        sample_with(UnconditionalImagePipeline, gaussian("sample"), scheduler_for(alias, "sample"), 10, n=4)


def test_sde_needs_torchsde_or_works():
    if HAVE_TORCHSDE:
        scheduler = make_scheduler("dpm++-sde", training_scheduler().config)
        x = sample_with(UnconditionalImagePipeline, gaussian(), scheduler, usual_steps("dpm++-sde"), n=64)
        mean_err, std_err = gaussian_errors(x)
        assert mean_err < USUAL_MEAN_TOL and std_err < USUAL_STD_TOL
    else:
        with pytest.raises(InputError, match=r"torchsde.*sd_course\[sde\]"):
            make_scheduler("dpm++-sde", training_scheduler().config)


def test_dpm_2m_sde_is_a_setting_of_dpm_solver_and_never_leaks_into_dpm_plus_plus():
    """``dpm++-2m-sde`` is DPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver++"): known by its config, never
    inherited by a swap back to ``dpm++``, and its fresh noise comes from the generator (a seed repeats it)."""
    sde = make_scheduler("dpm++-2m-sde", training_scheduler().config)
    assert type(sde).__name__ == "DPMSolverMultistepScheduler" and sde.config.algorithm_type == "sde-dpmsolver++"
    assert scheduler_info(sde).alias == "dpm++-2m-sde" and sde.config.beta_end == 0.02  # and the model's betas
    ode = make_scheduler("dpm++", sde.config)
    assert ode.config.algorithm_type == "dpmsolver++" and scheduler_info(ode).alias == "dpm++"
    assert make_scheduler("DPMSolverMultistepScheduler", sde.config).config.algorithm_type == "dpmsolver++"

    first, again = (sample_with(UnconditionalImagePipeline, gaussian(), sde, 25, n=8, seed=3) for _ in range(2))
    other_seed = sample_with(UnconditionalImagePipeline, gaussian(), sde, 25, n=8, seed=4)
    from_ode = sample_with(UnconditionalImagePipeline, gaussian(), ode, 25, n=8, seed=3)
    assert torch.equal(first, again) and not torch.allclose(first, other_seed)
    assert (first - from_ode).abs().mean() > 0.05  # same starting noise, another path: the SDE's fresh noise


def test_scheduler_settings_are_checked_against_the_class():
    """benchmarks/scheduler_table.py --settings: from_config would silently ignore a misspelt option."""
    assert check_scheduler_settings("dpm++", {"solver_order": 3}) == {"solver_order": 3}
    with pytest.raises(InputError, match=r"DPMSolverMultistepScheduler has no option 'solver_ordr'.*solver_order"):
        check_scheduler_settings("dpm++", {"solver_ordr": 3})
    with pytest.raises(InputError, match="unknown scheduler"):
        check_scheduler_settings("dpm+", {})


# ----------------------------------------------------------------------------------------------------------------
# 2. The same checks catch diffusers' stock DDPMPipeline where it is wrong
# ----------------------------------------------------------------------------------------------------------------


def standard_swap(alias):
    """What a user writes: ``X.from_config(pipe.scheduler.config, **settings)`` (no help from sd_course)."""
    info = next(info for info in SCHEDULERS if info.alias == alias)
    return getattr(diffusers, info.class_name).from_config(training_scheduler().config, **dict(info.options))


@pytest.mark.parametrize("alias", sorted(NO_GENERATOR_TYPEERROR))
def test_stock_pipeline_raises_typeerror_where_step_takes_no_generator(alias):
    with pytest.raises(TypeError, match="generator"):
        sample_with(DDPMPipeline, gaussian(), standard_swap(alias), 5, n=4)
    x = sample_with(UnconditionalImagePipeline, gaussian(), standard_swap(alias), 5, n=4)  # ours: same scheduler, runs
    assert torch.isfinite(x).all()


@pytest.mark.parametrize("alias", sorted(STOCK_WRONG))
def test_stock_pipeline_is_wrong_for_sigma_schedulers_and_ours_is_right(alias):
    steps = usual_steps(alias)
    stock = gaussian_errors(sample_with(DDPMPipeline, gaussian(), standard_swap(alias), steps))
    ours = gaussian_errors(sample_with(UnconditionalImagePipeline, gaussian(), standard_swap(alias), steps))
    assert stock[0] >= USUAL_MEAN_TOL or stock[1] >= USUAL_STD_TOL, (alias, stock)  # the bug is caught...
    assert stock[1] > 0.9, (alias, stock)  # ...and it is gross: std off by 90% or more (measured: +233%, -97%)
    assert ours[0] < USUAL_MEAN_TOL and ours[1] < USUAL_STD_TOL, (alias, ours)


@pytest.mark.parametrize("alias", sorted(STOCK_RIGHT))
def test_stock_pipeline_passes_where_it_is_right(alias):
    """The checks flag real bugs only: DDIM and the DPM-Solvers pass them in the stock pipeline too."""
    mean_err, std_err = gaussian_errors(sample_with(DDPMPipeline, gaussian(), standard_swap(alias), usual_steps(alias)))
    assert mean_err < USUAL_MEAN_TOL and std_err < USUAL_STD_TOL, (alias, mean_err, std_err)


def test_from_config_swap_changes_the_betas_of_heun_and_ours_pins_them():
    """diffusers passes on only the keys that were *set*: Heun takes its own default betas (Stable Diffusion's)."""
    trained = training_scheduler()
    heun = HeunDiscreteScheduler.from_config(trained.config)
    assert heun.config.beta_start == 0.00085 and trained.config.beta_start == 0.0001  # the trap, as measured

    # With the wrong betas the samples are measurably off, even with many steps (the converged test catches it):
    # (swap=False: the pipeline is built with Heun, so it takes Heun's betas for the model's.)
    wrong = gaussian_errors(sample_with(UnconditionalImagePipeline, gaussian(), heun, CONVERGED_STEPS, swap=False))
    assert wrong[0] >= CONVERGED_MEAN_TOL or wrong[1] >= CONVERGED_STD_TOL, wrong

    # Our pipeline holds a swapped-in scheduler to the model's schedule, and make_scheduler states it explicitly.
    pipe = UnconditionalImagePipeline(unet=gaussian(), scheduler=trained)
    pipe.scheduler = HeunDiscreteScheduler.from_config(pipe.scheduler.config)
    assert isinstance(pipe.scheduler, HeunDiscreteScheduler) and pipe.scheduler.config.beta_start == 0.0001
    assert make_scheduler("heun", trained.config).config.beta_end == 0.02


# ----------------------------------------------------------------------------------------------------------------
# 3. Real saved folders: load, swap, save, and plain diffusers still loads them
# ----------------------------------------------------------------------------------------------------------------


def test_loads_a_ddpm_pipeline_folder_cleanly(ddpm_folder):
    with diffusers_warnings() as seen:
        pipe = load_pipeline(str(ddpm_folder), "euler")
    assert seen == []
    assert type(pipe) is UnconditionalImagePipeline
    assert type(pipe.scheduler).__name__ == "EulerDiscreteScheduler"
    assert pipe.scheduler.config.num_train_timesteps == 100
    images = pipe(batch_size=2, generator=torch.Generator().manual_seed(0), num_inference_steps=3).images
    assert [im.size for im in images] == [(16, 16)] * 2 and images[0].mode == "L"


def test_our_saved_folder_loads_with_only_diffusers(ddpm_folder, tmp_path):
    pipe = load_pipeline(str(ddpm_folder), "dpm++")
    pipe.save_pretrained(tmp_path / "saved")
    index = json.loads((tmp_path / "saved" / "model_index.json").read_text())
    assert index["_class_name"] == "DDPMPipeline"
    assert index["scheduler"] == ["diffusers", "DPMSolverMultistepScheduler"]
    code = f"""
import sys
from diffusers import DiffusionPipeline
for folder in [{str(ddpm_folder)!r}, {str(tmp_path / 'saved')!r}]:
    pipe = DiffusionPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    out = pipe(batch_size=1, num_inference_steps=2, output_type="np").images
    print(type(pipe).__name__, type(pipe.scheduler).__name__, out.shape)
assert not any(m.startswith("sd_course") for m in sys.modules), "sd_course was imported"
"""
    result = run_python(code, timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.split("\n")
    assert "DDPMPipeline DDPMScheduler (1, 16, 16, 1)" in lines
    assert "DDPMPipeline DPMSolverMultistepScheduler (1, 16, 16, 1)" in lines


def test_output_types(ddpm_folder):
    pipe = load_pipeline(str(ddpm_folder), "ddim")
    pipe.set_progress_bar_config(disable=True)
    kwargs = dict(batch_size=3, num_inference_steps=2)
    pt = pipe(generator=torch.Generator().manual_seed(1), output_type="pt", **kwargs).images
    np_ = pipe(generator=torch.Generator().manual_seed(1), output_type="np", **kwargs).images
    pil = pipe(generator=torch.Generator().manual_seed(1), output_type="pil", **kwargs).images
    assert pt.shape == (3, 1, 16, 16) and 0 <= float(pt.min()) and float(pt.max()) <= 1
    assert np_.shape == (3, 16, 16, 1)
    assert torch.allclose(pt.permute(0, 2, 3, 1), torch.from_numpy(np_))
    assert len(pil) == 3 and pil[0].size == (16, 16)
    with pytest.raises(InputError, match="output_type"):
        pipe(output_type="latent", **kwargs)


def test_second_order_schedulers_call_the_model_at_every_timestep_entry():
    calls = []

    class Counting(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner, self.config = inner, inner.config

        dtype = property(lambda self: self.inner.dtype)
        device = property(lambda self: self.inner.device)

        def forward(self, x, t):
            calls.append(float(t))
            return self.inner(x, t)

    for alias, steps, expected in [("heun", 25, 49), ("kdpm2", 25, 49), ("ddim", 50, 50), ("dpm++", 25, 25)]:
        calls.clear()
        pipe = UnconditionalImagePipeline(unet=Counting(gaussian()), scheduler=scheduler_for(alias))
        pipe.set_progress_bar_config(disable=True)
        pipe(batch_size=2, num_inference_steps=steps, output_type="pt")
        assert len(calls) == expected == num_model_calls(pipe, steps), (alias, len(calls))


# ----------------------------------------------------------------------------------------------------------------
# 4. generate(): chunks, seeds, repeatability
# ----------------------------------------------------------------------------------------------------------------


def test_generate_is_repeatable_and_independent_of_batch_size(ddpm_folder):
    pipe = load_pipeline(str(ddpm_folder), "euler-a")  # stochastic: fresh noise at every step
    a = generate(pipe, 5, batch_size=5, num_inference_steps=4, seed=3, show_progress=False)
    b = generate(pipe, 5, batch_size=2, num_inference_steps=4, seed=3, show_progress=False)
    c = generate(pipe, 5, batch_size=5, num_inference_steps=4, seed=4, show_progress=False)
    assert a.dtype == torch.uint8 and a.shape == (5, 1, 16, 16)
    assert (a.int() - b.int()).abs().max() <= 1  # same images whatever the batch (up to float rounding)
    assert (a != c).any()
    again = generate(pipe, 5, batch_size=5, num_inference_steps=4, seed=3, show_progress=False)
    assert torch.equal(a, again)


def test_generate_uses_the_schedulers_usual_step_count(ddpm_folder):
    pipe = load_pipeline(str(ddpm_folder), "dpm++")
    seen = []
    pipe.scheduler.set_timesteps = (lambda original: lambda n, **kw: (seen.append(n), original(n, **kw))[1])(
        pipe.scheduler.set_timesteps)
    generate(pipe, 1, show_progress=False)
    assert seen[-1] == 25


# ----------------------------------------------------------------------------------------------------------------
# 5. Intermediates for the trajectory figure
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("alias", ["ddim", "dpm++", "edm-euler"])  # x0 from step(), computed, EDM adapter
def test_trajectory_records_x_t_and_the_bayes_optimal_x0(alias):
    pipe = UnconditionalImagePipeline(unet=gaussian(), scheduler=scheduler_for(alias))
    record = record_trajectory(pipe, num_images=64, num_frames=5, show_progress=False)
    assert record["x_t"].shape == record["x0"].shape == (5, 64, 1, 8, 8)
    assert record["call_indices"][0] == 0 and record["call_indices"][-1] == record["num_model_calls"] - 1
    # At the first call (pure noise) the optimal x0 is the data mean (Tweedie: E[x0 | x_T] ~ mu), and x_t is noise.
    assert abs(float(record["x0"][0].mean()) - MU) < 0.02 and float(record["x0"][0].std()) < 0.05
    assert abs(float(record["x_t"][0].std()) - 1) < 0.1
    # At the last call the predicted x0 is the final sample.
    assert (record["x0"][-1].clamp(-1, 1) - record["images"]).abs().max() < 0.05


# ----------------------------------------------------------------------------------------------------------------
# 6. Bad input: each a clear InputError
# ----------------------------------------------------------------------------------------------------------------


def test_unknown_scheduler_lists_the_valid_ones(ddpm_folder):
    with pytest.raises(InputError, match=r"unknown scheduler 'eulerr'.*euler-a \(EulerAncestralDiscreteScheduler\)"):
        load_pipeline(str(ddpm_folder), "eulerr")
    assert type(load_pipeline(str(ddpm_folder), "KDPM2AncestralDiscreteScheduler").scheduler).__name__ == \
        "KDPM2AncestralDiscreteScheduler"


def test_too_many_steps_for_a_scheduler_that_cannot(ddpm_folder):
    pipe = load_pipeline(str(ddpm_folder), "ddim")  # trained with 100 timesteps
    with pytest.raises(InputError, match=r"cannot take 101 steps.*--num_inference_steps 100 or fewer"):
        generate(pipe, 1, num_inference_steps=101, show_progress=False)
    pipe = load_pipeline(str(ddpm_folder), "unipc")
    with pytest.raises(InputError, match="99 or fewer"):
        generate(pipe, 1, num_inference_steps=100, show_progress=False)
    pipe = load_pipeline(str(ddpm_folder), "euler")  # the folder's config says timestep_spacing="leading"
    with pytest.raises(InputError, match="100 or fewer"):
        generate(pipe, 1, num_inference_steps=150, show_progress=False)
    pipe.scheduler = make_scheduler("euler", {**pipe.scheduler.config, "timestep_spacing": "linspace"})
    assert generate(pipe, 1, num_inference_steps=150, show_progress=False).shape == (1, 1, 16, 16)  # interpolates


def test_leading_spacing_with_a_steps_offset_never_steps_past_the_schedule():
    # Stable Diffusion's configs (and the shipped mini-sd-mnist): "leading" with steps_offset 1 visits t = k + 1 at
    # n = T, and t = T is one past alphas_cumprod: the default step count is cut to T - 1 and more is refused
    from diffusers import DDPMScheduler

    from sd_course.core.schedulers import check_num_inference_steps

    scheduler = DDPMScheduler(num_train_timesteps=100, timestep_spacing="leading", steps_offset=1)
    steps = check_num_inference_steps(scheduler, None)
    scheduler.set_timesteps(steps)
    assert steps == 99 and int(scheduler.timesteps.max()) == 99
    with pytest.raises(InputError, match="--num_inference_steps 99 or fewer"):
        check_num_inference_steps(scheduler, 100)
    assert check_num_inference_steps(DDPMScheduler(num_train_timesteps=100), None) == 100  # no offset: all of them


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_images=0), "--num_images must be at least 1"),
    (dict(num_images=-3), "--num_images must be at least 1"),
    (dict(num_images=2, batch_size=0), "--batch_size must be at least 1"),
    (dict(num_images=2, num_inference_steps=0), "--num_inference_steps must be at least 1"),
    (dict(num_images=2, num_inference_steps=-5), "--num_inference_steps must be at least 1"),
])
def test_zero_or_negative_counts(ddpm_folder, kwargs, message):
    pipe = load_pipeline(str(ddpm_folder))
    with pytest.raises(InputError, match=message):
        generate(pipe, show_progress=False, **kwargs)


def test_eta_only_for_ddim(ddpm_folder):
    with pytest.raises(InputError, match="--eta is DDIM's noise level.*--scheduler ddim"):
        generate(load_pipeline(str(ddpm_folder), "euler"), 1, eta=0.5, show_progress=False)
    with pytest.raises(InputError, match="--eta must be >= 0"):
        generate(load_pipeline(str(ddpm_folder), "ddim"), 1, num_inference_steps=2, eta=-1, show_progress=False)
    images = generate(load_pipeline(str(ddpm_folder), "ddim"), 2, num_inference_steps=2, eta=1.0, show_progress=False)
    assert images.shape == (2, 1, 16, 16)


def test_model_folders_that_are_not_pipelines(ddpm_folder, tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_pipeline(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no model_index.json.*sd-course train"):
        load_pipeline(str(tmp_path / "empty"))
    with pytest.raises(InputError, match="single model's folder.*pass its parent"):
        load_pipeline(str(ddpm_folder / "unet"))
    with pytest.raises(InputError, match="is a file"):
        load_pipeline(str(ddpm_folder / "model_index.json"))
    other = tmp_path / "ldm"
    other.mkdir()
    (other / "model_index.json").write_text(json.dumps({"_class_name": "LDMPipeline", "vqvae": ["diffusers", "VQModel"],
                                                        "unet": ["diffusers", "UNet2DModel"], "scheduler": ["x", "y"]}))
    with pytest.raises(InputError, match="LDMPipeline.*unconditional pixel-space"):
        load_pipeline(str(other))


def test_unreachable_hub_id(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError, match="could not load the pipeline 'nobody/no-such-ddpm'.*local pipeline folder"):
        load_pipeline("nobody/no-such-ddpm")


def test_default_model_path(monkeypatch, tmp_path, ddpm_folder):
    import sd_course.pixel.pipeline as pipeline_module

    monkeypatch.delenv("SD_COURSE_PRETRAINED", raising=False)
    monkeypatch.setattr(pipeline_module, "SHIPPED_MODEL", "pipelines/no-such-model")
    with pytest.raises(InputError, match="no --model given.*pass --model"):
        default_model_path()
    monkeypatch.setenv("SD_COURSE_PRETRAINED", str(tmp_path))
    with pytest.raises(InputError, match="SD_COURSE_PRETRAINED.*not a pipeline folder"):
        default_model_path()
    monkeypatch.setenv("SD_COURSE_PRETRAINED", str(ddpm_folder))
    assert default_model_path() == str(ddpm_folder)
    assert type(load_pipeline(None).scheduler).__name__ == "DDPMScheduler"


def test_trailing_spacing_is_inherited_except_by_the_samplers_it_breaks():
    """A pipeline saved with timestep_spacing="trailing" (as training saves it) passes it on to the samplers, except
    Heun and KDPM2-ancestral, whose first step from sigma_T ~ 2e4 fails (sd_course/core/schedulers.py, LEADING_ONLY)."""
    config = DDPMScheduler(beta_schedule="squaredcos_cap_v2", timestep_spacing="trailing").config
    for alias in ("dpm++", "euler", "ddim", "unipc"):
        scheduler = make_scheduler(alias, config)
        scheduler.set_timesteps(25)
        assert scheduler.config.timestep_spacing == "trailing" and int(scheduler.timesteps[0]) == 999, alias
    for alias in ("heun", "kdpm2-a"):
        scheduler = make_scheduler(alias, config)
        scheduler.set_timesteps(25)
        assert scheduler.config.timestep_spacing == "leading" and int(scheduler.timesteps[0]) == 960, alias


def test_an_explicit_timestep_spacing_overrides_the_config_for_every_sampler(ddpm_folder):
    """`load_pipeline(..., timestep_spacing=...)` (`sd-course compare/evaluate --timestep_spacing`): one spacing for
    every sampler, even the LEADING_ONLY ones (asked for explicitly); a typo fails before anything loads."""
    saved = load_pipeline(str(ddpm_folder), "dpm++")
    assert saved.scheduler.config.timestep_spacing == "leading"  # as DDPMScheduler saved it
    for alias in ("dpm++", "heun"):
        pipe = load_pipeline(str(ddpm_folder), alias, timestep_spacing="trailing")
        pipe.scheduler.set_timesteps(10)
        assert pipe.scheduler.config.timestep_spacing == "trailing" and int(pipe.scheduler.timesteps[0]) == 99, alias
    edm = [load_pipeline(str(ddpm_folder), "edm-euler", spacing).scheduler for spacing in (None, "trailing")]
    for scheduler in edm:  # EDM places its steps by sigma (Karras et al. 2022): no spacing to override
        scheduler.set_timesteps(10)
    assert torch.equal(edm[0].timesteps, edm[1].timesteps)
    with pytest.raises(InputError, match="--timestep_spacing must be one of trailing, leading, linspace, got 'trail'"):
        load_pipeline(str(ddpm_folder / "never-built"), "dpm++", timestep_spacing="trail")


def test_device_auto_is_the_gpu_when_there_is_one_and_bad_devices_are_named():
    from sd_course.core.device import resolve_device

    assert resolve_device("auto").type == resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(InputError, match="--device 'gpu0' is not a device torch knows"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="sees no CUDA GPU; use --device cpu"):
            resolve_device("cuda")
    pipe = load_pipeline("analytic:mnist", "dpm++", device="cpu")
    assert pipe.device.type == "cpu"
