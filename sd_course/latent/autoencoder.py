"""The latent space of Stable Diffusion: a digit autoencoder (diffusers' ``AutoencoderKL``), trained here.

    accelerate launch --num_cpu_threads_per_process 2 training/train_vae.py --config training/configs/vae-mnist.yaml \\
        --dataset_name ../shared/data/mnist --output_dir runs/vae-mnist
    python -c "from diffusers import AutoencoderKL; vae = AutoencoderKL.from_pretrained('runs/vae-mnist')"
    sd-course latents --vae runs/vae-mnist --output_dir figures/latents/       # the lesson's figures

The model (Kingma & Welling 2014; Rombach et al. 2022, the "KL-regularised" autoencoder of latent diffusion):

    encoder:  x (1x32x32) -> q(z | x) = N(mu(x), diag sigma^2(x)),  z of shape 4x8x8
    decoder:  z -> x_rec
    loss    = |x - x_rec| + beta * KL( q(z | x) || N(0, I) )       # reconstruction + a *small* KL term

Q: What is a latent space?
A: A smaller space of numbers from which the data can be rebuilt. The encoder maps each 32x32 digit (1,024 pixels;
   784 before padding) to 4x8x8 = 256 numbers z, the decoder maps z back to pixels. Training makes the decoder's
   output match the input, so whatever the 256 numbers keep must be what matters about the digit (its strokes),
   and what they drop is what does not (exact pixel noise). Nearby z decode to similar digits, so a straight line
   between two codes morphs one digit into another, where a line between two images in pixel space only
   cross-fades them (`sd-course latents`: docs/latent_space.md has the figure and the measured reconstruction cost).
Cmd: sd-course latents --vae pipelines/mini-sd-mnist/vae --output_dir docs/figures/latents
Fig: docs/figures/latents/channels.png

Q: Why diffuse there instead of in pixels?
A: Cost. The denoiser runs at every one of the ~25-1000 sampling steps and at every training step; on 4x8x8 latents
   it sees 16x fewer positions than on 32x32 pixels, and attention (O(positions^2)) becomes cheap enough to use
   everywhere. The autoencoder is trained once and frozen; its encoder runs once per training image (the latents are
   cached) and its decoder once per sample. Rombach et al. 2022 measured the same trade: a down-sampling factor of
   4-8 keeps almost all the quality at a fraction of the compute. `python benchmarks/latent_cost.py` measures it here.
Cmd: python benchmarks/latent_cost.py

Q: What does the VAE's scaling factor do?
A: It sets the signal-to-noise ratio at which the diffusion model meets the latents. The forward process is
   z_t = sqrt(abar_t) z_0 + sqrt(1 - abar_t) eps with eps ~ N(0, I), so the SNR at step t is Var(z_0) abar_t /
   (1 - abar_t): multiplying the latents by s shifts the log-SNR of *every* t by 2 ln s, the whole schedule moves.
   A schedule designed for data of unit variance fits only latents of unit variance; raw latents have whatever
   scale the KL term left them (Stable Diffusion's had std ~5.5, hence its scaling_factor 0.18215 = 1 / 5.49; with
   too large latents z_T still shows the image, with too small ones it is lost early). We measure the std of the
   training latents after training and store 1 / std in the VAE's config (the shipped VAE: 0.70, a log-SNR shift of
   2 ln 0.70 = -0.71); the text-to-image pipeline multiplies by it after encoding and divides by it before decoding,
   as diffusers' StableDiffusionPipeline does with ``vae.config.scaling_factor``. One global factor does not whiten:
   the four channels of the shipped VAE's scaled latents keep stds of 0.64, 1.06, 0.40 and 0.83
   (docs/figures/latents/latents.json), so each channel meets a somewhat different schedule.
Cmd: python benchmarks/vae_quality.py --dataset_name ../shared/data/mnist
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

from sd_course.core.data import load_run_dataset, random_flip, to_model_range, to_uint8
from sd_course.core.errors import InputError
from sd_course.core.images import to_pil_images
from sd_course.core.models import build_vae
from sd_course.train.config import TrainConfig, option
from sd_course.train.loop import Objective

RECONSTRUCTION_LOSSES = ("l1", "mse")


@dataclass
class VAEConfig(TrainConfig):
    # --- the model (sd_course/core/models.py) --------------------------------------------------------------------------
    vae_config_name_or_path: str = option("mnist-vae", "AutoencoderKL preset (mnist-vae, tiny-vae) or a config.json")
    # --- the loss -------------------------------------------------------------------------------------------------
    reconstruction_loss: str = option("l1", "per-pixel reconstruction term (Stable Diffusion's VAE: l1)",
                                      choices=RECONSTRUCTION_LOSSES)
    kl_weight: float = option(1e-6, "beta, the weight of KL(q(z|x) || N(0,I)), summed over the latent, per image")
    scaling_samples: int = option(2048, "training images whose latents set scaling_factor = 1 / std")
    # --- what differs from the diffusion defaults -----------------------------------------------------------------
    resolution: int = option(32, "images are padded (or resized) to this size; a multiple of the down-sampling factor")
    resize_mode: str = option("pad", "how other sizes are brought to --resolution (digits: pad 28 -> 32)",
                              choices=("resize", "pad", "center_crop"))
    output_dir: str = option("runs/vae", "where the AutoencoderKL folder, checkpoints, samples and logs go")

    POSITIVE = TrainConfig.POSITIVE + ("scaling_samples",)

    def validate(self) -> None:
        super().validate()
        if self.kl_weight < 0:
            raise InputError(f"--kl_weight must be >= 0, got {self.kl_weight}")


class VAEForTraining(torch.nn.Module):
    """``AutoencoderKL`` with the forward pass of training: encode, sample z by the reparameterisation trick, decode.

    (The loop's ``DistributedDataParallel`` averages gradients of what runs through ``forward``.)"""

    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, x, eps):
        posterior = self.vae.encode(x).latent_dist  # q(z | x) = N(mu, sigma^2)
        z = posterior.mean + posterior.std * eps  # z = mu + sigma * eps: a sample whose gradient reaches mu, sigma
        return self.vae.decode(z).sample, posterior.kl()  # x_rec, KL(q(z|x) || N(0, I)) per image


class Autoencoder(Objective):
    """Train a digit autoencoder (AutoencoderKL), the latent space of the mini Stable Diffusion (sd_course)."""

    name = "train_vae"
    config_class = VAEConfig

    def build(self, accelerator):
        cfg = self.cfg
        dataset, info = load_run_dataset(cfg, accelerator)
        self.dataset = dataset
        vae = build_vae(cfg.vae_config_name_or_path, info.resolution, info.num_channels)
        self.latent_shape = latent_shape(vae, info.resolution)
        return dataset, info, VAEForTraining(vae)

    def loss(self, model, batch, generator):
        x = batch["pixel_values"]
        if self.cfg.random_flip:
            x = random_flip(x, generator)
        eps = torch.randn((x.shape[0], *self.latent_shape), generator=generator).to(x.device)
        x_rec, kl = model(x, eps)
        if self.cfg.reconstruction_loss == "l1":
            reconstruction = F.l1_loss(x_rec.float(), x.float())
        else:
            reconstruction = F.mse_loss(x_rec.float(), x.float())
        kl = kl.float().mean()
        self.last_logs = {"reconstruction": reconstruction.item(), "kl": kl.item()}  # logged with the loss
        return reconstruction + self.cfg.kl_weight * kl

    def saveable(self, model):
        """The AutoencoderKL, with ``scaling_factor = 1 / std`` of the latents of the first training images."""
        vae = model.vae
        images = torch.stack([self.dataset[i]["pixel_values"]
                              for i in range(min(self.cfg.scaling_samples, len(self.dataset)))])
        vae.register_to_config(scaling_factor=compute_scaling_factor(vae, images, seed=self.cfg.seed))
        return vae

    def sample_images(self, vae):
        """Eight training digits (top row) and their reconstructions (bottom row)."""
        x = torch.stack([self.dataset[i]["pixel_values"] for i in range(min(8, len(self.dataset)))])
        with torch.no_grad():
            x_rec = vae.decode(vae.encode(x).latent_dist.mean).sample
        return to_pil_images(to_uint8(torch.cat([x, x_rec]))), 2

    def summary(self, vae) -> dict:
        return {"scaling_factor": vae.config.scaling_factor, "latent_shape": list(self.latent_shape)}


# ----------------------------------------------------------------------------------------------------------------
# Using a trained autoencoder: load, encode, decode
# ----------------------------------------------------------------------------------------------------------------


def latent_shape(vae, resolution: int) -> tuple[int, int, int]:
    """(C, H, W) of the latents of a ``resolution`` x ``resolution`` image."""
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    return vae.config.latent_channels, resolution // factor, resolution // factor


@torch.no_grad()
def compute_scaling_factor(vae, images: torch.Tensor, seed: int = 0, batch_size: int = 256) -> float:
    """1 / std of latents z ~ q(z | x) over ``images`` (in [-1, 1]): scaled latents then have unit variance."""
    was_training = vae.training
    vae.eval()
    generator = torch.Generator().manual_seed(seed)
    latents = [vae.encode(images[i:i + batch_size]).latent_dist.sample(generator)
               for i in range(0, len(images), batch_size)]
    vae.train(was_training)
    return float(1.0 / torch.cat(latents).float().std())


def load_vae(path: str | Path):
    """An ``AutoencoderKL`` from a folder (a VAE folder, or a pipeline folder with ``vae/``), with clear errors."""
    folder = Path(path)
    if (folder / "model_index.json").is_file() and (folder / "vae").is_dir():
        folder = folder / "vae"  # a StableDiffusionPipeline folder: its autoencoder
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise InputError(f"--vae {path}: no config.json there; pass a folder saved by training/train_vae.py "
                         "(or AutoencoderKL.save_pretrained), or a text-to-image pipeline folder")
    try:
        class_name = json.loads(config_file.read_text()).get("_class_name")
    except json.JSONDecodeError as e:
        raise InputError(f"{config_file} is not valid JSON ({e})") from e
    if class_name != "AutoencoderKL":
        raise InputError(f"--vae {path} holds a {class_name}, not an AutoencoderKL; pass the output_dir of "
                         "training/train_vae.py or a pipeline's vae/ folder")
    try:
        return AutoencoderKL.from_pretrained(str(folder)).eval()
    except Exception as e:
        raise InputError(f"--vae {path}: the weights could not be loaded ({type(e).__name__}: {e}); the file is "
                         "corrupt or incomplete: copy or train it again") from e


def prepare_images(images_uint8: torch.Tensor, vae) -> torch.Tensor:
    """uint8 digits (N, C, H, W) -> the VAE's input in [-1, 1]: 28x28 padded to 32x32 (black border), 32x32 kept.

    Other sizes and a channel count the VAE was not trained on are refused with the fix, not silently resized."""
    if images_uint8.ndim != 4:
        raise InputError(f"expected a batch of images (N, C, H, W), got shape {tuple(images_uint8.shape)}")
    channels, size = vae.config.in_channels, vae.config.sample_size
    if images_uint8.shape[1] != channels:
        fix = "convert it to grayscale (PIL: image.convert('L'))" if channels == 1 else "convert it to RGB"
        raise InputError(f"the VAE takes {channels}-channel images, got {images_uint8.shape[1]} channels: {fix}")
    h, w = images_uint8.shape[-2:]
    if (h, w) != (size, size):
        if h > size or w > size or (size - h) % 2 or (size - w) % 2:
            raise InputError(f"the VAE takes {size}x{size} images (or smaller ones it pads, like 28x28 digits); got "
                             f"{h}x{w}: resize the image to 28x28 or {size}x{size} first")
        top, left = (size - h) // 2, (size - w) // 2
        images_uint8 = F.pad(images_uint8, (left, size - w - left, top, size - h - top))
    return to_model_range(images_uint8)


@torch.no_grad()
def encode(vae, images: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None,
           batch_size: int = 256) -> torch.Tensor:
    """Images in [-1, 1] -> *scaled* latents ``scaling_factor * z`` (z = the posterior mean, or a sample)."""
    out = []
    for i in range(0, len(images), batch_size):
        dist = vae.encode(images[i:i + batch_size].to(vae.device, vae.dtype)).latent_dist
        out.append((dist.sample(generator) if sample else dist.mean).cpu())  # on the CPU, wherever the VAE runs
    return torch.cat(out) * vae.config.scaling_factor


@torch.no_grad()
def decode(vae, latents: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Scaled latents -> images in [-1, 1] (clamped)."""
    out = [vae.decode((latents[i:i + batch_size] / vae.config.scaling_factor).to(vae.device, vae.dtype)).sample.cpu()
           for i in range(0, len(latents), batch_size)]
    return torch.cat(out).clamp(-1, 1)
