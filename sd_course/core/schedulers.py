"""Noise schedules and samplers: the ``--scheduler`` names, and the curves of a beta schedule.

Two different things are both called a "schedule" in diffusers, and this file holds both:

* the **noise schedule** of training, ``beta_1 .. beta_T`` (``DDPMScheduler(beta_schedule=...)``): how fast the forward
  process destroys the image. It is fixed once the model is trained: the network learned ``eps(x_t, t)`` for *those*
  noise levels.
* the **sampler** of inference (DDPM, DDIM, Euler, DPM-Solver++, ...): how to walk back from noise to an image with
  that trained network. Any of the 15 ``DDPMScheduler.compatibles`` can be swapped in after training:

    python -c "from sd_course.core.schedulers import make_scheduler; from diffusers import DDPMScheduler; \\
               print(make_scheduler('dpm++', DDPMScheduler().config))"
    sd-course sample --model runs/mnist --scheduler euler-a --num_inference_steps 50 --output grid.png

Q: What does a noise schedule control, and why plot alpha_bar_t rather than beta_t?
A: The forward process adds a little noise per step, ``q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I)``.
   Composing the steps gives the closed form ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps`` with
   ``abar_t = prod_{s<=t} (1 - beta_s)``, so ``abar_t`` is what the network actually sees: the fraction of the
   image's variance still left at step t. ``beta_t`` is only its (tiny, hard to read) rate of change.
   ``sd-course schedules --output schedules.png`` plots both, and the log signal-to-noise ratio
   ``log SNR_t = log(abar_t / (1 - abar_t))``, which is the most telling axis: a schedule is a way of spending the
   T steps over the log-SNR range. Which part of that range matters is a question about whole images, not pixels.
   At the top, log-SNR +5 still leaves noise of std exp(-2.5) = 0.08 in the model's [-1, 1] range (10 grey levels of
   255); the noise falls below one grey level only above log-SNR 9.7, about where the linear (9.2) and the cosine
   (10.1) schedules start. At the bottom, a per-pixel SNR far below 1 can still decide the digit, because the
   decision pools all 784 pixels: two of analytic:mnist's 16 digits lie a median distance d = 19.9 apart, and
   ``x_t / sqrt(abar_t) = x_0 + sigma_t eps`` tells them apart while ``d / sigma_t = d sqrt(SNR_t)`` is above ~1, i.e.
   down to log-SNR ~ -6. The analytic trajectory (``sd-course trajectory --model analytic:mnist``) commits to its
   digit near t = 560 of the linear schedule, where abar_t = 0.041 (log-SNR -3.2, d / sigma_t = 4.1). Only below
   log-SNR ~ -6 (t >= 769 linear, t >= 968 cosine) is a typical pair of digits less than one noise std apart.
Cmd: sd-course schedules --output schedules.png
Fig: schedules.png

Q: Linear, scaled_linear, squaredcos_cap_v2 (cosine), sigmoid: how do they differ?
A: * ``linear`` (Ho et al. 2020): beta from 1e-4 to 0.02. At 28x28 or 32x32 it destroys the image early: abar_t is
     below 0.05 from t = 542 of 1000. That is not yet pure noise for a whole digit (the analytic trajectory decides
     its digit near t = 560, abar_t = 0.041: see the question above), but from t = 769 (log-SNR < -6) two typical
     digits are less than one noise std apart, so the last ~23% of the steps are spent on almost pure noise.
   * ``squaredcos_cap_v2`` (Nichol & Dhariwal 2021, "improved DDPM"): abar_t = cos^2((t/T + s)/(1 + s) * pi/2), so
     log-SNR falls almost linearly in t over most of the range (steeply in the first and last few percent of the
     steps); better likelihood and samples at low resolution. Its betas are capped at 0.999, so abar_T = 2e-9
     (log-SNR -19.8, sigma_T = 20,291): truly pure noise at the end. The shipped model uses it.
   * ``scaled_linear`` (Stable Diffusion): linear in sqrt(beta). It is meant for the 4x64x64 *latents* of a VAE,
     with its own betas (0.00085 to 0.012). With DDPMScheduler's default betas (1e-4 to 0.02), as in
     ``sd-course schedules``, beta grows more slowly: abar_t stays above 0.05 until t = 727 and ends at
     abar_T = 7e-4 (log-SNR -7.2, sigma_T = 37), so pixel images are never quite pure noise at t = T.
   * ``sigmoid`` (GeoDiff, Xu et al. 2022): beta follows a sigmoid from beta_start to beta_end; flat at both ends.
Cmd: sd-course schedules --output schedules.png
Cmd: sd-course forward --beta_schedule squaredcos_cap_v2 --output forward_cosine.png
Fig: schedules.png

Q: Why can a model trained with the DDPM schedule be sampled by Euler, Heun, DPM-Solver++ ...?
A: Training teaches the network one thing: the posterior mean of the noise (equivalently of the clean image or of v,
   and so the score ``-E[eps | x_t] / sqrt(1-abar_t)``) at every noise level. Every sampler integrates one of two
   reverse-time equations with the same marginals p_t (Song et al. 2021; docs/derivations.md section 4): the
   reverse SDE (DDPM, Euler-ancestral, KDPM2-ancestral, DPM++ SDE, DPM++ 2M SDE, DDIM with eta > 0) or its
   deterministic "probability-flow" ODE (all the others). Both need only the score, which is why one network serves
   all of them. They differ in the equation and the numerical method: DDPM (Euler-Maruyama on the SDE, 1 call per
   step, ~1000 steps), DDIM (one Euler step per call of the ODE in the variance-exploding variables x_t /
   sqrt(abar_t) and sigma_t, which is a first-order exponential integrator in x_t, ~50 steps), Euler/Heun
   (first/second order on that same ODE, Karras et al. 2022), DPM-Solver(++)/UniPC/DEIS (higher-order exponential
   integrators, ~20-25 steps).
Cmd: sd-course sample --scheduler heun --num_images 16 --output heun.png
Fig: heun.png

Q: Why do the "sigma" schedulers (Euler, Heun, LMS, KDPM2, EDM) start from noise with a std far above 1 (157 for
   the linear schedule, 20,291 for the shipped cosine model)?
A: They work in the variance-exploding parametrisation (Karras et al. 2022): ``x_ve = x_t / sqrt(abar_t)
   = x_0 + sigma_t eps`` with ``sigma_t = sqrt((1 - abar_t) / abar_t)``. For the linear schedule sigma_T = 157; for the
   shipped model's cosine schedule, whose abar_T is 2.4e-9, sigma_T = 20,291, and "trailing" spacing starts Euler,
   Euler-ancestral, LMS and KDPM2 there (Heun and KDPM2-ancestral, kept on "leading", start at t = 960, sigma 16.4;
   EDM-Euler keeps its own range, sigma_max = 80). Their
   ``init_noise_sigma`` says how to scale the initial N(0, I) noise, and ``scale_model_input`` maps x_ve back to the
   ``x_t = x_ve / sqrt(1 + sigma^2)`` that the network was trained on. A pipeline that skips either (as diffusers'
   ``DDPMPipeline`` does) feeds the network inputs it never saw: see ``sd_course/pixel/pipeline.py``.

Q: Deterministic or stochastic sampler?
A: DDIM (eta = 0), Euler, Heun, LMS, DPM-Solver++, UniPC, DEIS follow the ODE: the same starting noise always gives
   the same image, and the noise -> image map is smooth (interpolating noises interpolates images). DDPM, DDIM with
   eta = 1, Euler-ancestral, KDPM2-ancestral, DPM++ SDE and DPM++ 2M SDE add fresh noise at every step: better on
   a model that is not trained to convergence (the noise washes out the errors of earlier steps, which the ODE
   carries to the end; Karras et al. 2022, section 4), and repeatable only with a seed. The same solver both ways
   (25 steps = 25 model calls, 1,000 samples): on the 16-epoch CPU model DPM-Solver++ 2M on the ODE (``dpm++``)
   scored FID 22.0, on the SDE (``dpm++-2m-sde``, ``algorithm_type="sde-dpmsolver++"``) 12.9, and no setting of the
   ODE solver closed the gap (solver_order 3: 21.3, thresholding: 22.3, Lu's lambdas: 24.4); on the shipped model,
   trained 4.7x longer, [12.8](pipelines/ddpm-mnist/samplers.json#rows.scheduler=dpm++.fid) and
   [7.5](pipelines/ddpm-mnist/samplers.json#rows.scheduler=dpm++-2m-sde.fid), and DDPM's 1,000 ancestral steps
   [6.0](benchmarks/results/scheduler_table_ddpm1000.json#rows.scheduler=ddpm.fid) (below the floor of 6.9 at
   this n, for 40x the calls): the gap shrinks as the network's own error does (benchmarks/README.md
   sections 12-13).
Cmd: sd-course sample --scheduler euler-a --num_images 16 --seed 0 --output euler_a.png
Cmd: sd-course sample --scheduler dpm++-2m-sde --num_inference_steps 25 --num_images 16 --seed 0 --output dpm_sde.png
Cmd: sd-course evaluate --scheduler dpm++-2m-sde --num_inference_steps 25 --num_samples 1000 --reference ../shared/data/mnist:test
Fig: euler_a.png
Fig: dpm_sde.png

Q: Where do the n sampling steps go among the T training timesteps?
A: The scheduler config's ``timestep_spacing`` decides. ``"leading"``, DDPMScheduler's default and so the setting
   of every pipeline that diffusers' examples save, takes multiples of T // n (T // (n + 1) for the multistep
   solvers): with T = 1000, DPM-Solver++ at 25 steps starts at t = 950, where the cosine schedule leaves
   sqrt(abar_950) = 0.076 of the image in x_t, and feeds the network pure noise labelled "8% digit". ``"trailing"``
   counts back from T - 1 (999, 959, ..., 39), so the first step is taken where the input really is pure noise
   (Lin et al. 2023, "Common diffusion noise schedules and sample steps are flawed", section 3.3). Measured on the
   shipped 75-epoch model, DPM-Solver++ 25 steps on the same 1,000 starting noises: FID
   [16.4](benchmarks/results/timestep_spacing_n1000.json#rows.scheduler=dpm++&timestep_spacing=leading.fid) with "leading", [12.8](benchmarks/results/timestep_spacing_n1000.json#rows.scheduler=dpm++&timestep_spacing=trailing.fid) with "trailing". At n = 200 the same comparison
   came out the other way for all five samplers tried (DPM-Solver++ 25 [30.3](benchmarks/results/timestep_spacing.json#rows.scheduler=dpm++&timestep_spacing=leading.fid)
   against [35.5](benchmarks/results/timestep_spacing.json#rows.scheduler=dpm++&timestep_spacing=trailing.fid), DDIM 50 [27.1](benchmarks/results/timestep_spacing.json#rows.scheduler=ddim&timestep_spacing=leading.fid)
   against [34.4](benchmarks/results/timestep_spacing.json#rows.scheduler=ddim&timestep_spacing=trailing.fid)): five samplers on the same 200 noises are one draw, not five,
   and 200 samples cannot rank a difference of this size (docs/evaluation.md). (At 50 steps the two start closer
   together, "leading" at t = 980 and "trailing" at t = 999 (``set_timesteps(50)``): at t = 980 the cosine schedule
   leaves only sqrt(abar_980) = 0.030 of the image, against 0.076 at t = 950.)
   On the 10-epoch model (n = 1,000) DPM-Solver++ 25 steps: FID 26.0 -> 22.6, and the 1s, too rare with "leading"
   (6.1%), came back (9.0%); on the 16-epoch model 24.5 -> 22.0. Training saves ``"trailing"``
   (``--timestep_spacing``, sd_course/pixel/diffusion.py), so the samplers swapped in with ``from_config`` inherit it,
   except two that it breaks: Heun and KDPM2-ancestral scored FID 420 and 113 with it (their first step spans
   sigma 20,291 -> 16), so ``make_scheduler`` keeps them on "leading" (``LEADING_ONLY`` below).
Cmd: python benchmarks/scheduler_table.py --schedulers dpm++ --timestep_spacing leading,trailing --reference ../shared/data/mnist:test --num_samples 1000 --output_json benchmarks/results/timestep_spacing_n1000.json
Cmd: python benchmarks/scheduler_table.py --schedulers dpm++,unipc,ddim,euler,euler-a --timestep_spacing leading,trailing --reference ../shared/data/mnist:test --num_samples 200 --batch_size 200 --output_json benchmarks/results/timestep_spacing.json

Q: What happens if we change the noise schedule?
A: Two different things, depending on when. *In training*, t is drawn uniformly, so the schedule decides how many
   training examples (and sampling steps) fall at each noise level. The linear schedule spends 46% of its steps
   at abar_t < 0.05 (t >= 542), which still decides the digit (near t = 560 in the analytic trajectory), and 23%
   below log-SNR -6 (t >= 769), where two typical digits are less than one noise std apart; cosine spreads them
   nearly evenly in log-SNR (steep only at both ends) and ends at abar_T = 2e-9; scaled_linear with these betas ends at abar_T = 7e-4, so its "pure noise" at t = T still
   holds a trace of the image that sampling, which starts from N(0, I), never reproduces.
   ``sd-course forward --beta_schedule NAME`` shows what each leaves of a digit at each t. Measured
   (benchmarks/noise_schedules.py: the same 0.99M U-Net, v-prediction, 314 steps on 10,000 digits, only the
   schedule differs): cosine learns fastest, FID [358.1](benchmarks/results/noise_schedules.json#curves.squaredcos_cap_v2.epoch=2.fid) against
   scaled_linear [374.6](benchmarks/results/noise_schedules.json#curves.scaled_linear.epoch=2.fid), linear
   [403.9](benchmarks/results/noise_schedules.json#curves.linear.epoch=2.fid), sigmoid [427.9](benchmarks/results/noise_schedules.json#curves.sigmoid.epoch=2.fid),
   and stays the best at 5 DPM-Solver++ steps ([392.1](benchmarks/results/noise_schedules.json#fid_by_steps.squaredcos_cap_v2.5.fid)) with
   "trailing" spacing ("leading" starts those 5 steps at t = 800, far from its pure noise, and made it the worst);
   the same starting noise draws nearly the same digit under all four. With eps-prediction the spread was 905-1388 and the cosine
   model collapsed to one class: the prediction target matters more than the schedule. *In sampling*, a schedule
   other than the one the model was trained with tells the network the wrong noise level for its input: the
   shipped cosine model scores FID [35.5](benchmarks/results/noise_schedules_crossed.json#sampled_with.squaredcos_cap_v2.fid) with its own betas,
   [77.7](benchmarks/results/noise_schedules_crossed.json#sampled_with.scaled_linear.fid) with scaled_linear's, [121.6](benchmarks/results/noise_schedules_crossed.json#sampled_with.sigmoid.fid) with sigmoid's,
   [237.3](benchmarks/results/noise_schedules_crossed.json#sampled_with.linear.fid) with linear's (n = 200); Heun built in memory from a linear-schedule model's config takes Stable Diffusion's
   betas (the from_config trap of docs/sampling.md), starts from sigma_max 25 instead of that model's 157 and fails
   the 250-step exactness test (a folder read from disk, like the shipped one, states every key and is safe).
   That is why every scheduler here is held to the model's schedule.
Cmd: sd-course forward --beta_schedule squaredcos_cap_v2 --output forward_cosine.png
Cmd: sd-course schedules --output schedules.png
Cmd: python benchmarks/noise_schedules.py --dataset_name ../shared/data/mnist --prediction_type v_prediction --preset mnist-narrow --mixed_precision no --eval_samples 300 --num_samples 200
Cmd: python benchmarks/noise_schedules.py --dataset_name ../shared/data/mnist --model pipelines/ddpm-mnist --num_samples 200
Fig: forward_cosine.png
Fig: docs/figures/noise_schedules_curves.png
"""

from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass

import diffusers
import torch
from diffusers import DDPMScheduler
from diffusers.utils import logging as diffusers_logging

from sd_course.core.errors import InputError

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid")
# How a sampler places its n steps among the T training timesteps (the Q/A "Where do the n sampling steps go?").
TIMESTEP_SPACINGS = ("trailing", "leading", "linspace")


# ----------------------------------------------------------------------------------------------------------------
# 1. The samplers: one row per scheduler of DDPMScheduler.compatibles (diffusers 0.42.1)
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SchedulerInfo:
    alias: str  # the short --scheduler name
    class_name: str  # the diffusers class
    default_steps: int  # the usual --num_inference_steps
    max_steps: str  # "train": at most num_train_timesteps steps; "train-1": one fewer; "any": interpolates sigmas
    what: str  # one line for --help and the docs
    options: tuple = ()  # (key, value) settings of the class that make this sampler (two rows share a class)


# max_steps was measured with `set_timesteps(n)` for n around num_train_timesteps T: DDPM/DDIM raise above T and
# PNDM silently repeats one timestep; the integer multistep solvers (DPM++, DPM-single, DEIS, UniPC) round
# linspace(0, T-1, n+1), which repeats a timestep from n = T on (a zero-length step); the sigma schedulers
# interpolate between training noise levels, so any count works, unless their config says
# timestep_spacing="leading" (as one made from a saved DDPMScheduler config does): then at most T.
SCHEDULERS = (
    SchedulerInfo("ddpm", "DDPMScheduler", 1000, "train", "ancestral sampling, Algorithm 2 of Ho et al. 2020"),
    SchedulerInfo("ddim", "DDIMScheduler", 50, "train", "DDIM (Song et al. 2021); deterministic at eta=0"),
    SchedulerInfo("pndm", "PNDMScheduler", 50, "train", "pseudo numerical methods (Liu et al. 2022)"),
    SchedulerInfo("lms", "LMSDiscreteScheduler", 50, "any", "linear multistep on the sigma ODE (Karras et al. 2022)"),
    SchedulerInfo("euler", "EulerDiscreteScheduler", 50, "any", "Euler on the sigma ODE (Karras et al. 2022)"),
    SchedulerInfo("euler-a", "EulerAncestralDiscreteScheduler", 50, "any", "Euler with fresh noise each step"),
    SchedulerInfo("heun", "HeunDiscreteScheduler", 25, "any", "Heun, 2nd order: 2 model calls per step"),
    SchedulerInfo("dpm++", "DPMSolverMultistepScheduler", 25, "train-1", "DPM-Solver++ 2M (Lu et al. 2022)",
                  (("algorithm_type", "dpmsolver++"),)),  # the ODE; stated, so that it is never inherited as the SDE
    SchedulerInfo("dpm++-2m-sde", "DPMSolverMultistepScheduler", 25, "train-1",
                  "DPM-Solver++ 2M on the SDE: fresh noise each step, 1 call/step",
                  (("algorithm_type", "sde-dpmsolver++"),)),
    SchedulerInfo("dpm++-sde", "DPMSolverSDEScheduler", 25, "any", "DPM-Solver++ SDE, 2 calls/step; needs torchsde"),
    SchedulerInfo("dpm-single", "DPMSolverSinglestepScheduler", 25, "train-1", "DPM-Solver++ singlestep"),
    SchedulerInfo("kdpm2", "KDPM2DiscreteScheduler", 25, "any", "DPM-Solver-2 (k-diffusion), 2 calls per step"),
    SchedulerInfo("kdpm2-a", "KDPM2AncestralDiscreteScheduler", 25, "any", "KDPM2 with fresh noise, 2 calls per step"),
    SchedulerInfo("deis", "DEISMultistepScheduler", 25, "train-1", "DEIS (Zhang & Chen 2023)"),
    SchedulerInfo("unipc", "UniPCMultistepScheduler", 25, "train-1", "UniPC predictor-corrector (Zhao et al. 2023)"),
    SchedulerInfo("edm-euler", "EDMEulerScheduler", 50, "any", "Euler in EDM form (Karras et al. 2022)"),
)
ALIASES = {info.alias: info.class_name for info in SCHEDULERS}
_BY_ALIAS = {info.alias: info for info in SCHEDULERS}
_BY_CLASS = {}  # a class name means the first row of that class (DPMSolverMultistepScheduler: dpm++, the ODE)
for _info in SCHEDULERS:
    _BY_CLASS.setdefault(_info.class_name, _info)
FALLBACK_STEPS = 50  # for a scheduler class that is not in the table (a newer diffusers)


def scheduler_choices() -> str:
    """``"ddpm (DDPMScheduler), ddim (DDIMScheduler), ..."``, for error messages and --help."""
    return ", ".join(f"{info.alias} ({info.class_name})" for info in SCHEDULERS)


def resolve_scheduler_name(name: str) -> str:
    """An alias (``euler-a``) or a diffusers class name (``EulerAncestralDiscreteScheduler``) -> the class name."""
    key = name.strip()
    if key.lower() in ALIASES:
        return ALIASES[key.lower()]
    by_lower = {info.class_name.lower(): info.class_name for info in SCHEDULERS}
    if key.lower() in by_lower:
        return by_lower[key.lower()]
    compatible = {cls.__name__ for cls in DDPMScheduler._get_compatibles()}
    if key in compatible:  # a scheduler a newer diffusers added to the list
        return key
    raise InputError(f"unknown scheduler {name!r}; use one of: {scheduler_choices()}")


def scheduler_info(scheduler_or_name) -> SchedulerInfo | None:
    """The row of a scheduler: by alias or class name, or for a scheduler object by its class *and* config (a
    DPMSolverMultistepScheduler with ``algorithm_type="sde-dpmsolver++"`` is ``dpm++-2m-sde``); None if not listed."""
    if isinstance(scheduler_or_name, str):
        return _BY_ALIAS.get(scheduler_or_name.strip().lower()) or _BY_CLASS.get(scheduler_or_name)
    name, config = type(scheduler_or_name).__name__, scheduler_or_name.config
    rows = [info for info in SCHEDULERS if info.class_name == name
            and all(config.get(key) == value for key, value in info.options)]
    return rows[0] if rows else _BY_CLASS.get(name)


def default_num_inference_steps(scheduler) -> int:
    """The usual step count of a scheduler (1000 for DDPM, 50 for DDIM/Euler, 25 for DPM-Solver++...)."""
    info = scheduler_info(scheduler)
    return info.default_steps if info else FALLBACK_STEPS


@contextlib.contextmanager
def quiet_diffusers():
    """Silence diffusers' logger inside the block (its config warnings are about keys we drop on purpose)."""
    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(level)


# The settings that belong to the *model* (fixed at training), not to the sampler.
NOISE_SCHEDULE_KEYS = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas",
                       "rescale_betas_zero_snr", "prediction_type")


def noise_schedule_of(scheduler_or_config) -> dict:
    """The training noise schedule stated in a scheduler (or its config): ``{"beta_start": 0.0001, ...}``."""
    config = getattr(scheduler_or_config, "config", scheduler_or_config)
    return {key: config[key] for key in NOISE_SCHEDULE_KEYS if key in config}


def _init_keys(cls) -> set:
    return set(inspect.signature(cls.__init__).parameters)


def _schedule_for(cls, noise_schedule: dict) -> dict:
    """The keys of ``noise_schedule`` that ``cls`` takes, in a form it can build.

    Only DDPM (and RePaint) compute the ``sigmoid`` schedule (Jabri et al. 2022); every other sampler raises
    NotImplementedError for it. They all accept the betas themselves (``trained_betas``): same noise levels.
    """
    keys = _init_keys(cls)
    wanted = {key: value for key, value in noise_schedule.items() if key in keys}
    if wanted.get("beta_schedule") == "sigmoid" and "trained_betas" in keys and \
            cls.__name__ not in ("DDPMScheduler", "DDPMParallelScheduler", "RePaintScheduler"):
        known = {k: noise_schedule[k] for k in ("num_train_timesteps", "beta_start", "beta_end") if k in noise_schedule}
        betas = DDPMScheduler(beta_schedule="sigmoid", **known).betas
        wanted.update(beta_schedule="linear", trained_betas=betas.tolist())
    return wanted


def with_noise_schedule(scheduler, noise_schedule: dict):
    """``scheduler`` rebuilt with the model's noise schedule where it states another one (else returned as is).

    Why this is needed: ``X.from_config(config)`` passes on only the keys that were *set* in ``config``; a key left
    at its default there (listed in ``config["_use_default_values"]``) takes X's *own* default. DDPMScheduler's
    default betas are 0.0001..0.02, but Heun's, KDPM2's, KDPM2-ancestral's and DPM++ SDE's are Stable Diffusion's
    0.00085..0.012. So ``HeunDiscreteScheduler.from_config(DDPMScheduler().config)`` silently samples a model with
    the wrong noise levels (sigma_max 25 instead of 157; measured in tests/pixel/test_pipeline.py). Folders read from disk
    are not affected (their config states every key), schedulers built in memory are.
    """
    wanted = _schedule_for(type(scheduler), noise_schedule)
    if all(scheduler.config.get(key) == value for key, value in wanted.items()):
        return scheduler
    with quiet_diffusers():
        return type(scheduler).from_config(scheduler.config, **wanted)


# "trailing" starts at t = T-1, where the cosine schedule's sigma is 20,291; the next trailing step (t = 959) is at
# sigma 16. Heun's corrector averages the slopes at both ends of that 1,268x step, and KDPM2-ancestral's midpoint
# sits between them: on the 10-epoch model they scored FID 420 and 113 with "trailing" (n = 200), against 37.2 and
# 28.9 with "leading", which starts them at t = 960 (sigma 16.4). Every other sampler takes the first step fine.
LEADING_ONLY = ("HeunDiscreteScheduler", "KDPM2AncestralDiscreteScheduler")


def make_scheduler(name: str, config):
    """A scheduler by alias or class name, built from another scheduler's config: the standard diffusers swap
    ``pipe.scheduler = X.from_config(pipe.scheduler.config)``, which keeps the *training* settings (number of
    timesteps, betas, prediction_type; stated explicitly, see :func:`with_noise_schedule`) and takes the sampler's
    own defaults for everything else.
    """
    class_name = resolve_scheduler_name(name)
    cls = getattr(diffusers, class_name)
    try:
        overrides = _schedule_for(cls, noise_schedule_of(config))
    except (TypeError, ValueError):  # the placeholder class diffusers defines when torchsde is missing
        overrides = {}
    info = scheduler_info(name) or scheduler_info(class_name)
    overrides.update(info.options if info else ())  # a variant's settings, e.g. algorithm_type="sde-dpmsolver++"
    if class_name == "DPMSolverSinglestepScheduler":
        # With its default final_sigmas_type="zero" diffusers switches this on itself, with a warning; say it here.
        overrides["lower_order_final"] = True
    if class_name in LEADING_ONLY and dict(config).get("timestep_spacing") == "trailing":
        overrides["timestep_spacing"] = "leading"
    try:
        with quiet_diffusers():  # "config attributes ... are not expected": the other samplers' keys, kept on purpose
            return cls.from_config(config, **overrides)
    except ImportError as e:  # DPMSolverSDEScheduler without torchsde is a diffusers placeholder class
        raise InputError(
            f"scheduler {name!r} ({class_name}) needs the optional package torchsde, which is not installed: run "
            "pip install 'sd_course[sde]' (or pip install torchsde), or pick another scheduler, e.g. dpm++ or euler-a"
        ) from e


def check_scheduler_settings(name: str, settings: dict) -> dict:
    """``settings`` (e.g. ``{"solver_order": 3}``) if the scheduler ``name`` has every one of those options, else an
    InputError naming the unknown ones: ``from_config`` would ignore a misspelt key and sample with the default."""
    cls = getattr(diffusers, resolve_scheduler_name(name))
    unknown = sorted(set(settings) - _init_keys(cls) - {"self"})
    if unknown:
        options = ", ".join(sorted(_init_keys(cls) - {"self", "kwargs"}))
        raise InputError(f"{cls.__name__} has no option {', '.join(map(repr, unknown))}; its options are: {options}")
    return settings


def check_timestep_spacing(spacing: str | None) -> str | None:
    """None (as the config says) or one of TIMESTEP_SPACINGS, else an InputError (checked before any loading)."""
    if spacing is not None and spacing not in TIMESTEP_SPACINGS:
        raise InputError(f"--timestep_spacing must be one of {', '.join(TIMESTEP_SPACINGS)}, got {spacing!r}")
    return spacing


def with_timestep_spacing(scheduler, spacing: str | None):
    """The same sampler with its steps placed by ``spacing`` (None: unchanged). An explicit choice, so it overrides
    ``LEADING_ONLY``: how ``sd-course compare --timestep_spacing`` scores a whole ladder one way, and how
    benchmarks/scheduler_table.py measures each spacing. Schedulers without the option (EDM's) are returned as is."""
    if check_timestep_spacing(spacing) is None:
        return scheduler
    if "timestep_spacing" not in inspect.signature(type(scheduler).__init__).parameters:
        return scheduler
    with quiet_diffusers():
        return type(scheduler).from_config(scheduler.config, timestep_spacing=spacing)


def check_steps_value(num_inference_steps) -> int | None:
    """None (the scheduler's usual count) or a whole number >= 1, else an InputError. Needs no model, so the
    commands call it before loading one (the limit that depends on the model is :func:`check_num_inference_steps`)."""
    if num_inference_steps is None:
        return None
    try:
        whole = not isinstance(num_inference_steps, bool) and int(num_inference_steps) == num_inference_steps
    except (TypeError, ValueError):
        whole = False
    if not whole:
        raise InputError(f"--num_inference_steps must be a whole number, got {num_inference_steps!r}")
    steps = int(num_inference_steps)
    if steps <= 0:
        raise InputError(f"--num_inference_steps must be at least 1, got {steps}; e.g. 25 for dpm++, 50 for ddim")
    return steps


def check_num_inference_steps(scheduler, num_inference_steps) -> int:
    """A positive step count that this scheduler can take with this model, else an InputError saying what can.
    No count given: the scheduler's usual one, or as many as it can take if that is fewer."""
    limit = max_num_inference_steps(scheduler)
    if num_inference_steps is None:
        default = default_num_inference_steps(scheduler)
        return default if limit is None else min(default, limit)
    steps = check_steps_value(num_inference_steps)
    info = scheduler_info(scheduler)
    train_steps = int(scheduler.config.num_train_timesteps)
    if limit is not None and steps > limit:
        alias = info.alias if info else type(scheduler).__name__
        raise InputError(
            f"{alias} ({type(scheduler).__name__}) cannot take {steps} steps: the model was trained with "
            f"{train_steps} timesteps and this scheduler only visits those, so use --num_inference_steps {limit} or "
            "fewer (or a sigma scheduler such as euler, heun or lms, which interpolates between them)"
        )
    if limit is None and steps > INTERPOLATED_STEPS_FACTOR * train_steps:
        alias = info.alias if info else type(scheduler).__name__
        raise InputError(
            f"{alias}: {steps} steps is more than {INTERPOLATED_STEPS_FACTOR}x the model's {train_steps} training "
            f"timesteps; steps between those change nothing measurable and each costs one network call, so use "
            f"--num_inference_steps {INTERPOLATED_STEPS_FACTOR * train_steps} or fewer (25-50 are usual)")
    return steps


def max_num_inference_steps(scheduler) -> int | None:
    """The most steps this scheduler can take with this model (None: it interpolates between the timesteps).

    "leading" spacing visits t = k * (T // n) + steps_offset for k = 0..n-1: at n = T with steps_offset = 1 (the
    configs Stable Diffusion ships) the last t is T, one past the schedule, so n must stay <= T - steps_offset."""
    info = scheduler_info(scheduler)
    train_steps = int(scheduler.config.num_train_timesteps)
    rule = info.max_steps if info else "train"
    leading = scheduler.config.get("timestep_spacing") == "leading"
    if rule == "any" and leading:
        rule = "train"  # "leading" spacing steps by T // n, which is 0 for n > T (a folder saved by DDPM says so)
    limit = {"train": train_steps, "train-1": train_steps - 1}.get(rule)
    if limit is not None and leading:
        limit = min(limit, train_steps - int(scheduler.config.get("steps_offset", 0) or 0))
    return limit


# A sigma scheduler may interpolate between the training timesteps; beyond this many times their number, steps are
# only cost (100,000 Euler steps of the shipped model would run for over half an hour on a laptop).
INTERPOLATED_STEPS_FACTOR = 2


def step_accepts(scheduler, name: str) -> bool:
    """Whether ``scheduler.step`` takes the keyword ``name`` (``generator``, ``eta``...): they differ."""
    return name in inspect.signature(scheduler.step).parameters


# ----------------------------------------------------------------------------------------------------------------
# 2. The training noise levels, and moving between timesteps t and noise levels sigma
# ----------------------------------------------------------------------------------------------------------------


def training_alphas_cumprod(scheduler_or_noise_schedule) -> torch.Tensor:
    """``abar_t`` for t = 0..T-1 of the model's training schedule (float64), from a scheduler, its config, or a
    :func:`noise_schedule_of` dict. EDM schedulers keep no betas; ``from_config`` carried any non-default training
    keys along in their config, and the rest are DDPMScheduler's defaults.
    """
    schedule = noise_schedule_of(scheduler_or_noise_schedule)
    with quiet_diffusers():
        alphas_cumprod = DDPMScheduler(**schedule).alphas_cumprod.to(torch.float64)
    return alphas_cumprod.clamp_min(2.0**-24)  # zero-terminal-SNR schedules end at abar = 0 (as Euler does)


def sigmas_from_alphas_cumprod(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """``sigma_t = sqrt((1 - abar_t) / abar_t)``: the noise level of x_t in the variance-exploding form."""
    return ((1 - alphas_cumprod) / alphas_cumprod).sqrt()


def sigma_to_timestep(sigma: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """The (fractional) training timestep whose noise level is ``sigma``: linear interpolation in log sigma, as
    diffusers' Euler/Heun/LMS/KDPM2 do in ``_sigma_to_t``. Clamped to [0, T-1], the range the model was trained on.
    """
    log_sigmas = sigmas_from_alphas_cumprod(alphas_cumprod).log()  # increasing in t
    log_sigma = torch.as_tensor(sigma, dtype=torch.float64).to(log_sigmas.device).clamp_min(1e-10).log()  # on a GPU too
    t = torch.arange(len(log_sigmas), dtype=torch.float64)
    high = torch.searchsorted(log_sigmas, log_sigma.reshape(-1)).clamp(1, len(log_sigmas) - 1)
    low = high - 1
    w = (log_sigma.reshape(-1) - log_sigmas[low]) / (log_sigmas[high] - log_sigmas[low])
    return (t[low] + w.clamp(0, 1)).reshape(log_sigma.shape)


def alpha_bar_at(timesteps, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """``abar_t`` at any (fractional) timestep: the inverse of :func:`sigma_to_timestep` (log sigma is linear in t
    between two integer timesteps), so integer t gives ``alphas_cumprod[t]`` exactly."""
    t = torch.as_tensor(timesteps, dtype=torch.float64).clamp(0, len(alphas_cumprod) - 1)
    log_sigmas = sigmas_from_alphas_cumprod(alphas_cumprod.to(torch.float64)).log()
    low = t.floor().long().clamp(max=len(alphas_cumprod) - 2)
    w = t - low
    log_sigma = (1 - w) * log_sigmas[low] + w * log_sigmas[low + 1]
    return 1 / (1 + (2 * log_sigma).exp())  # abar = 1 / (1 + sigma^2)


# ----------------------------------------------------------------------------------------------------------------
# 3. The curves of a beta schedule (plotted by sd_course.core.plots.schedules_figure)
# ----------------------------------------------------------------------------------------------------------------


def schedule_curves(beta_schedule: str = "linear", num_train_timesteps: int = 1000, **scheduler_kwargs) -> dict:
    """``{"t", "beta", "alpha_bar", "log_snr"}`` of a DDPMScheduler built with this ``beta_schedule``."""
    if beta_schedule not in BETA_SCHEDULES:
        raise InputError(f"unknown beta schedule {beta_schedule!r}; use one of {list(BETA_SCHEDULES)}")
    if int(num_train_timesteps) < 2:
        raise InputError(f"--num_train_timesteps must be at least 2, got {num_train_timesteps}")
    scheduler = DDPMScheduler(num_train_timesteps=int(num_train_timesteps), beta_schedule=beta_schedule,
                              **scheduler_kwargs)
    abar = scheduler.alphas_cumprod.to(torch.float64)
    return dict(
        t=torch.arange(len(abar)),
        beta=scheduler.betas.to(torch.float64),
        alpha_bar=abar,  # abar_t = prod_{s<=t} (1 - beta_s)
        log_snr=(abar / (1 - abar)).log(),  # log SNR_t = log(abar_t / (1 - abar_t))
    )
