"""Diffusion as a training objective: teach a U-Net to predict the noise that was added to an image (Ho et al. 2020).

    accelerate launch training/train_unconditional.py --config training/configs/mnist.yaml --output_dir runs/mnist
    python training/train_unconditional.py --max_train_steps 200 --output_dir runs/quick     # no launcher needed
    sd-course train --help                                                                    # every flag

Algorithm 1 of Ho et al. 2020 (training), one optimisation step:

    x_0 ~ data,  t ~ Uniform{0, ..., T-1},  eps ~ N(0, I)
    x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps            # the forward process q(x_t | x_0), in closed form
    loss = w(t) || target - model(x_t, t) ||^2               # target = eps | v | x_0  (--prediction_type)

The same three lines train the pixel model here and the latent model of sd_course/latent/text_to_image.py (x_0 is then a
VAE latent, and the model also reads a caption). The loop around them (accelerate, EMA, checkpoints) is
sd_course/train/loop.py. The flags are those of diffusers' ``examples/unconditional_image_generation`` wherever the
concept is the same, so commands carry over.

Q: What does the model actually learn?
A: A denoiser for every noise level at once: given x_t and t, the posterior mean of what was mixed into it. A squared
   loss is minimised by a conditional mean, so with ``prediction_type`` "epsilon" the optimum is ``E[eps | x_t]``, and
   with "v_prediction" (the shipped model, trained on plain ``|| v - v_theta ||^2``: ``snr_gamma`` none) it is
   ``E[v | x_t]``, ``v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0``. The targets are interchangeable because, given x_t
   and t, x_0, eps and v determine each other by the algebra of the forward process:
   ``x_0 = sqrt(abar_t) x_t - sqrt(1 - abar_t) v = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)``; being linear, these
   relations carry over to the conditional means, so ``E[v | x_t]`` gives ``E[x_0 | x_t]`` and ``E[eps | x_t]``. The
   choice of target changes the weighting over t:
   ``|| v - v_hat ||^2 = (1 + 1/SNR_t) || eps - eps_hat ||^2 = (1 + SNR_t) || x_0 - x0_hat ||^2`` (docs/derivations.md
   section 3). Tweedie's formula is the separate, statistical step:
   ``E[x_0 | x_t] = (x_t + (1 - abar_t) grad log p_t(x_t)) / sqrt(abar_t)``, equivalently
   ``E[eps | x_t] = -sqrt(1 - abar_t) grad log p_t(x_t)``, so the trained network is an estimate of the score of every
   noised data distribution p_t (denoising score matching), which is all a sampler needs. At high noise
   ``E[x_0 | x_t]`` is an average of many digits, a blur: exactly the Part 1 lesson (sd_course/inversion/arcsin.py),
   an MSE-trained inverse of a many-to-one map predicts an average. The network is not trained to undo one step of the
   chain but to denoise in one shot at each t; the sampler builds an image from those averages by many small steps,
   each of which is nearly one-to-one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from diffusers import DDPMPipeline, DDPMScheduler
from diffusers.training_utils import compute_snr

from sd_course.core.data import load_run_dataset, random_flip
from sd_course.core.errors import InputError
from sd_course.core.models import build_unet
from sd_course.core.schedulers import BETA_SCHEDULES, TIMESTEP_SPACINGS, make_scheduler, resolve_scheduler_name
from sd_course.pixel.pipeline import UnconditionalImagePipeline
from sd_course.train.config import TrainConfig, option
from sd_course.train.loop import Objective

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
TIMESTEP_SAMPLINGS = ("uniform", "stratified", "logit_normal")


@dataclass
class DiffusionConfig(TrainConfig):
    # --- model (sd_course/core/models.py) ----------------------------------------------------------------------------
    model_config_name_or_path: str = option("mnist", "U-Net preset (mnist, cifar10, tiny) or a UNet2DModel config.json")
    # --- noise schedule (diffusers.DDPMScheduler) ---------------------------------------------------------------
    ddpm_num_steps: int = option(1000, "T, the number of diffusion steps")
    ddpm_beta_schedule: str = option("linear", "beta_t schedule", choices=BETA_SCHEDULES)
    prediction_type: str = option("epsilon", "what the U-Net predicts", choices=PREDICTION_TYPES)
    validation_scheduler: str = option("ddim", "the sampler of the sample grids saved during training, any "
                                               "--scheduler of sd-course sample (e.g. dpm++-2m-sde: the one a "
                                               "briefly trained model is measured with)")
    ddpm_num_inference_steps: int = option(50, "sampling steps of those grids")
    # Saved in the pipeline's scheduler config, so every sampler made from it (scheduler.from_config) inherits it.
    # "leading" (DDPMScheduler's own default) starts DPM-Solver++ at 25 steps at t = 950, never at pure noise;
    # "trailing" starts the samplers at t = T-1 (Lin et al. 2023, section 3.3): DPM++ 25 FID 24.5 -> 22.0 on the
    # 16-epoch CPU model (benchmarks/README.md section 13); Heun and KDPM2-ancestral stay on "leading" (schedulers.py).
    timestep_spacing: str = option("trailing", "how samplers place n steps among the T training timesteps",
                                   choices=TIMESTEP_SPACINGS)
    snr_gamma: Optional[float] = option(None, "min-SNR loss weighting (Hang et al. 2023; 5.0 is their choice; "
                                              "default: none, every t weighs the same)")
    noise_offset: float = option(0.0, "add noise_offset * N(0, 1) per image and channel to eps (brighter darks)")
    timestep_sampling: str = option("uniform", "how t is drawn per image: uniform (Ho et al.), stratified (one t "
                                               "per 1/B of [0, T) per batch: the same law, less variance) or "
                                               "logit_normal (more middle noise levels, Esser et al. 2024)",
                                    choices=TIMESTEP_SAMPLINGS)

    POSITIVE = TrainConfig.POSITIVE + ("ddpm_num_steps", "ddpm_num_inference_steps")

    def validate(self) -> None:
        super().validate()
        if self.snr_gamma is not None and self.snr_gamma <= 0:
            raise InputError(f"--snr_gamma must be positive (5.0 is the paper's value), got {self.snr_gamma}")
        if self.noise_offset < 0:
            raise InputError(f"--noise_offset must be >= 0, got {self.noise_offset}")
        try:  # a misspelt sampler fails now, not at the first grid
            resolve_scheduler_name(self.validation_scheduler)
        except InputError as e:
            raise InputError(f"--validation_scheduler: {e}") from None


def draw_timesteps(batch: int, num_steps: int, generator: torch.Generator, sampling: str = "uniform"):
    """t for each image of a batch, in 0..T-1.

    1. ``uniform``: t ~ U{0..T-1}, Algorithm 1 of Ho et al. 2020.
    2. ``stratified``: the batch's B draws fall one in each of B equal slices of [0, T), in random order: each t
       is still uniform, but a batch never piles up at one end (the low-discrepancy sampler of Kingma et al. 2021).
    3. ``logit_normal``: u = sigmoid(n), n ~ N(0, 1), t = floor(u T): the middle noise levels, where the digit's
       shape is decided, are drawn more often than the ends (Esser et al. 2024, section 3.1). The loss per t is
       then weighted by the density of this law: the optimum moves toward what the sampler needs most.
    """
    if sampling == "uniform":
        return torch.randint(0, num_steps, (batch,), generator=generator)
    if sampling == "stratified":
        u = (torch.arange(batch) + torch.rand(batch, generator=generator)) / batch
        u = u[torch.randperm(batch, generator=generator)]
    elif sampling == "logit_normal":
        u = torch.sigmoid(torch.randn(batch, generator=generator))
    else:
        raise InputError(f"--timestep_sampling must be one of {', '.join(TIMESTEP_SAMPLINGS)}, got {sampling!r}")
    return (u * num_steps).long().clamp(0, num_steps - 1)


def make_noise_scheduler(cfg: DiffusionConfig, **overrides):
    """The forward process q(x_t | x_0): T steps of a beta schedule (``DDPMScheduler``, also used for sampling)."""
    return DDPMScheduler(num_train_timesteps=cfg.ddpm_num_steps, beta_schedule=cfg.ddpm_beta_schedule,
                         prediction_type=cfg.prediction_type, timestep_spacing=cfg.timestep_spacing, **overrides)


def training_target(noise_scheduler, x0, noise, timesteps):
    """What the network is trained to output, for each ``prediction_type``."""
    kind = noise_scheduler.config.prediction_type
    if kind == "epsilon":
        return noise  # eps
    if kind == "v_prediction":
        return noise_scheduler.get_velocity(x0, noise, timesteps)  # v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0
    return x0  # "sample": predict x_0 directly


def noise_batch(noise_scheduler, x0, generator: torch.Generator, noise_offset: float = 0.0,
                timestep_sampling: str = "uniform"):
    """Draw (eps, t) and make x_t for one batch: the first two lines of Algorithm 1. Returns (x_t, eps, t)."""
    noise = torch.randn(x0.shape, generator=generator)  # eps ~ N(0, I)
    if noise_offset:
        # Offset noise (Guttenberg 2023): a per-image, per-channel constant shift lets the model change mean brightness.
        noise = noise + noise_offset * torch.randn((x0.shape[0], x0.shape[1], 1, 1), generator=generator)
    noise = noise.to(x0.device)
    num_steps = noise_scheduler.config.num_train_timesteps
    timesteps = draw_timesteps(x0.shape[0], num_steps, generator, timestep_sampling).to(x0.device)
    noisy = noise_scheduler.add_noise(x0, noise, timesteps)  # x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps
    return noisy, noise, timesteps


def diffusion_loss(noise_scheduler, prediction, x0, noise, timesteps, snr_gamma: Optional[float] = None):
    """|| target - model(x_t, t) ||^2, optionally weighted per t by min-SNR-gamma (Hang et al. 2023)."""
    target = training_target(noise_scheduler, x0, noise, timesteps)
    if snr_gamma is None:
        return F.mse_loss(prediction.float(), target.float())
    # SNR(t) = abar_t / (1 - abar_t). Low-noise steps (high SNR) are easy and dominate the gradients; min-SNR caps
    # their weight at gamma: w = min(SNR, gamma) / SNR for eps, min(SNR, gamma) / (SNR + 1) for v.
    snr = compute_snr(noise_scheduler, timesteps)
    weight = torch.minimum(snr, torch.full_like(snr, snr_gamma))
    if noise_scheduler.config.prediction_type == "epsilon":
        weight = weight / snr
    elif noise_scheduler.config.prediction_type == "v_prediction":
        weight = weight / (snr + 1)
    per_image = F.mse_loss(prediction.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
    return (per_image * weight).mean()


class PixelDiffusion(Objective):
    """Train an unconditional DDPM on images (sd_course)."""

    name = "train_unconditional"
    config_class = DiffusionConfig

    def build(self, accelerator):
        cfg = self.cfg
        dataset, info = load_run_dataset(cfg, accelerator)
        self.noise_scheduler = make_noise_scheduler(cfg)
        return dataset, info, build_unet(cfg.model_config_name_or_path, info.resolution, info.num_channels)

    def loss(self, model, batch, generator):
        x0 = batch["pixel_values"]
        if self.cfg.random_flip:
            x0 = random_flip(x0, generator)
        noisy, noise, timesteps = noise_batch(self.noise_scheduler, x0, generator, self.cfg.noise_offset,
                                              self.cfg.timestep_sampling)
        prediction = model(noisy, timesteps).sample
        return diffusion_loss(self.noise_scheduler, prediction, x0, noise, timesteps, self.cfg.snr_gamma)

    def saveable(self, unet):
        return DDPMPipeline(unet=unet, scheduler=self.noise_scheduler)

    def sample_images(self, pipe):
        """A grid of samples (the seeds of ``--seed``) by ``--validation_scheduler``, as square as the batch allows.
        Drawn by the course's pipeline, which runs every diffusers sampler correctly (``sd_course/pixel/pipeline.py``):
        the stock ``DDPMPipeline`` that is saved runs only some of them right."""
        sampler = UnconditionalImagePipeline(pipe.unet, self.noise_scheduler)
        sampler.scheduler = make_scheduler(self.cfg.validation_scheduler, self.noise_scheduler.config)
        sampler.set_progress_bar_config(disable=True)
        images = sampler(batch_size=self.cfg.eval_batch_size, num_inference_steps=self.cfg.ddpm_num_inference_steps,
                         generator=torch.Generator().manual_seed(self.cfg.seed)).images
        rows = int(math.sqrt(len(images)))
        while len(images) % rows:
            rows -= 1
        return images, rows
