"""The latent space of Stable Diffusion: a digit autoencoder (diffusers' ``AutoencoderKL``), trained here.

    accelerate launch --num_cpu_threads_per_process 2 training/train_vae.py --config training/configs/vae-mnist.yaml \\
        --dataset_name ../shared/data/mnist --output_dir runs/vae-mnist
    python -c "from diffusers import AutoencoderKL; vae = AutoencoderKL.from_pretrained('runs/vae-mnist')"
    sd-course latents --vae runs/vae-mnist --output_dir figures/latents/       # the lesson's figures

The model (Kingma & Welling 2014; Rombach et al. 2022, the "KL-regularised" autoencoder of latent diffusion):

    encoder:  x (1x32x32) -> q(z | x) = N(mu(x), diag sigma^2(x)),  z of shape 4x8x8
    decoder:  z -> x_rec
    loss    = |x - x_rec| + beta * KL( q(z | x) || N(0, I) )       # reconstruction + a *small* KL term
            + p * perceptual(x, x_rec)                             # --perceptual_weight: strokes, not pixels
            + w * lambda * (-D(x_rec))                             # --adversarial_weight: a patch discriminator D
            (+ D's own hinge loss, which reaches only D's weights)

The last two are what Stable Diffusion's autoencoder recipe adds (Esser et al. 2021, "taming transformers";
Rombach et al. 2022): an L1 loss alone is minimised by the *median* of the strokes a code could stand for, a blur;
a perceptual term compares feature maps of a network that knows digits (LPIPS's role; here the small digit CNN of
``sd_course/assets/mnist-perceptual``, see ``perceptual_distance``), and a discriminator that judges 16x16 patches
as real or reconstructed penalises any blur it can see. Both start after a warm-up (``--perceptual_start``,
``--adversarial_start``): the autoencoder first learns to reconstruct at all.

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
   4-8 keeps almost all the quality at a fraction of the compute. On our 28x28 digits the saving is small, and it
   is spent: the shipped mini-SD's U-Net (2.4x the pixel U-Net's parameters) and 77-token text encoder train at
   [147.7](benchmarks/results/latent_cost.json#latent_images_per_s) images/s against the pixel model's [129.4](benchmarks/results/latent_cost.json#pixel_images_per_s)
   ([1.14x](benchmarks/results/latent_cost.json#latent_speedup), bf16, 2 CPU cores): latent space buys a larger, text-conditioned model at about the
   pixel model's cost per image. The factor grows with the image (48x fewer numbers for Stable Diffusion at 512x512).
Cmd: python benchmarks/latent_cost.py --output_json benchmarks/results/latent_cost.json

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
from typing import Optional

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from torch import nn

from sd_course.core.data import load_run_dataset, random_flip, to_model_range, to_uint8
from sd_course.core.digit_cnn import load_digit_cnn
from sd_course.core.errors import InputError
from sd_course.core.images import to_pil_images
from sd_course.core.models import build_vae, vae_downsample_factor
from sd_course.train.config import TrainConfig, option
from sd_course.train.loop import Objective

RECONSTRUCTION_LOSSES = ("l1", "mse")
TRAIN_PARTS = ("all", "decoder")
DEFAULT_PERCEPTUAL_NETWORK = Path(__file__).resolve().parents[1] / "assets" / "mnist-perceptual"


@dataclass
class VAEConfig(TrainConfig):
    # --- the model (sd_course/core/models.py) --------------------------------------------------------------------------
    vae_config_name_or_path: str = option("mnist-vae", "AutoencoderKL preset (mnist-vae, tiny-vae) or a config.json")
    pretrained_vae: Optional[str] = option(None, "start from this trained AutoencoderKL (a VAE folder, or a pipeline "
                                                 "folder with vae/) instead of a fresh --vae_config_name_or_path")
    train_parts: str = option("all", "what learns: all, or decoder (the encoder frozen: the latents, their "
                                     "scaling_factor and every model trained on them stay valid; Stable "
                                     "Diffusion's ft-MSE / ft-EMA decoders)", choices=TRAIN_PARTS)
    # --- the loss -------------------------------------------------------------------------------------------------
    reconstruction_loss: str = option("l1", "per-pixel reconstruction term (Stable Diffusion's VAE: l1)",
                                      choices=RECONSTRUCTION_LOSSES)
    kl_weight: float = option(1e-6, "beta, the weight of KL(q(z|x) || N(0,I)), summed over the latent, per image")
    perceptual_weight: float = option(0.0, "weight p of the perceptual term (perceptual_distance; Stable "
                                           "Diffusion: LPIPS, weight 1); 0: off")
    perceptual_network: Optional[str] = option(None, "the DigitCNN folder whose feature maps the perceptual term "
                                                     "compares (default: sd_course/assets/mnist-perceptual)")
    perceptual_start: int = option(0, "optimiser steps before the perceptual term switches on")
    adversarial_weight: float = option(0.0, "weight w of the patch discriminator's term, times the adaptive weight "
                                            "lambda of Esser et al. 2021 (Stable Diffusion: 0.5); 0: no discriminator")
    adversarial_start: int = option(0, "optimiser steps before the discriminator's terms switch on (Stable "
                                       "Diffusion: 50,001): first learn to reconstruct, then to be sharp")
    discriminator_width: int = option(64, "channels of the patch discriminator's first layer")
    scaling_samples: int = option(2048, "training images whose latents set scaling_factor = 1 / std")
    # --- what differs from the diffusion defaults -----------------------------------------------------------------
    resolution: int = option(32, "images are padded (or resized) to this size; a multiple of the down-sampling factor")
    resize_mode: str = option("pad", "how other sizes are brought to --resolution (digits: pad 28 -> 32)",
                              choices=("resize", "pad", "center_crop"))
    output_dir: str = option("runs/vae", "where the AutoencoderKL folder, checkpoints, samples and logs go")

    POSITIVE = TrainConfig.POSITIVE + ("scaling_samples", "discriminator_width")
    NON_NEGATIVE = TrainConfig.NON_NEGATIVE + ("perceptual_start", "adversarial_start")

    def validate(self) -> None:
        super().validate()
        for name in ("kl_weight", "perceptual_weight", "adversarial_weight"):
            if getattr(self, name) < 0:
                raise InputError(f"--{name} must be >= 0, got {getattr(self, name)}")
        if self.train_parts == "decoder" and not self.pretrained_vae:
            raise InputError("--train_parts decoder freezes the encoder, so it needs a trained one: pass "
                             "--pretrained_vae DIR (e.g. pipelines/mini-sd-mnist/vae), or --train_parts all")


class PatchDiscriminator(nn.Module):
    """PatchGAN (Isola et al. 2017), the discriminator of Stable Diffusion's autoencoder recipe: a few strided
    convolutions whose output is a map of logits, one per overlapping patch (6x6 patches of 22x22 pixels of a 32x32
    digit), each saying "real" (> 0) or "reconstructed" (< 0). Judging patches, not whole images, it punishes blur
    and smeared strokes anywhere, and leaves the digit's identity to the reconstruction and perceptual terms."""

    def __init__(self, in_channels: int = 1, width: int = 64):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2),             # 32 -> 16
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(2 * width),
            nn.LeakyReLU(0.2),                                                                      # 16 -> 8
            nn.Conv2d(2 * width, 4 * width, 4, stride=1, padding=1, bias=False), nn.BatchNorm2d(4 * width),
            nn.LeakyReLU(0.2),                                                                      # 8 -> 7
            nn.Conv2d(4 * width, 1, 4, stride=1, padding=1))                                        # 7 -> 6

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class VAEForTraining(torch.nn.Module):
    """``AutoencoderKL`` with the forward pass of training: encode, sample z by the reparameterisation trick, decode;
    and, with a discriminator, its logits on the real and the reconstructed images.

    (The loop's ``DistributedDataParallel`` averages gradients of what runs through ``forward``.)"""

    def __init__(self, vae, discriminator: Optional[PatchDiscriminator] = None):
        super().__init__()
        self.vae, self.discriminator = vae, discriminator

    def forward(self, x, eps):
        posterior = self.vae.encode(x).latent_dist  # q(z | x) = N(mu, sigma^2)
        z = posterior.mean + posterior.std * eps  # z = mu + sigma * eps: a sample whose gradient reaches mu, sigma
        x_rec = self.vae.decode(z).sample
        out = {"x_rec": x_rec, "kl": posterior.kl()}  # KL(q(z|x) || N(0, I)) per image
        if self.discriminator is not None:
            # D's own loss sees the reconstruction detached (no gradient into the autoencoder); the autoencoder is
            # judged by D with detached weights (no gradient into D): one optimiser steps both, as in gan/dcgan.py
            out["d_real"] = self.discriminator(x)
            out["d_fake"] = self.discriminator(x_rec.detach())
            frozen = {name: p.detach() for name, p in self.discriminator.named_parameters()}
            out["d_fake_for_vae"] = torch.func.functional_call(self.discriminator, frozen, (x_rec,))
        return out


def perceptual_distance(network, x: torch.Tensor, x_rec: torch.Tensor, num_blocks: int = 2) -> torch.Tensor:
    """LPIPS's distance (Zhang et al. 2018, without its learnt per-channel weights) in a digit CNN's feature maps:

        d(x, y) = sum_l mean_{h,w} || f_l(x)_hw / |f_l(x)_hw| - f_l(y)_hw / |f_l(y)_hw| ||^2

    over the first ``num_blocks`` conv blocks (32 maps at 28x28, 64 at 14x14): where strokes run and how they meet,
    not pixel values. The third block and the 128-d features the metrics use are not compared, and the network is a
    second DigitCNN trained with another seed (sd_course/assets/mnist-perceptual), not the metrics' classifier:
    the autoencoder is never trained on the features its FID is measured in. Images in [-1, 1], 32x32 (cropped to
    the 28x28 the network reads; other sizes are resized); returns the mean over the batch."""
    def prepare(images):
        size = network.config["image_size"]
        if images.shape[-1] >= size and (images.shape[-1] - size) % 2 == 0:  # 32x32 padded digits: the centre
            top = (images.shape[-1] - size) // 2
            images = images[..., top:top + size, top:top + size]
        else:  # other sizes (the tests' 16x16): resized to what the network reads
            images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
        norm = network.config["normalization"]
        return ((images.float() + 1) / 2 - norm["mean"]) / norm["std"]  # as normalize() does for uint8 pixels

    total = x.new_zeros((), dtype=torch.float32)
    for a, b in zip(network.feature_maps(prepare(x), num_blocks), network.feature_maps(prepare(x_rec), num_blocks)):
        a = a / (a.norm(dim=1, keepdim=True) + 1e-10)
        b = b / (b.norm(dim=1, keepdim=True) + 1e-10)
        total = total + (a - b).pow(2).sum(dim=1).mean()
    return total


def adaptive_weight(loss_rec: torch.Tensor, loss_adv: torch.Tensor, last_layer: torch.Tensor) -> torch.Tensor:
    """lambda = |grad_L loss_rec| / (|grad_L loss_adv| + 1e-4) at the decoder's last layer L (Esser et al. 2021,
    eq. 7): the adversarial gradient is scaled to the size of the reconstruction gradient, so w means the same
    whatever the two losses' scales, and a discriminator that wins outright cannot swamp the reconstruction."""
    g_rec, = torch.autograd.grad(loss_rec, last_layer, retain_graph=True)
    g_adv, = torch.autograd.grad(loss_adv, last_layer, retain_graph=True)
    return (g_rec.norm() / (g_adv.norm() + 1e-4)).clamp(0.0, 1e4).detach()


class Autoencoder(Objective):
    """Train a digit autoencoder (AutoencoderKL), the latent space of the mini Stable Diffusion (sd_course)."""

    name = "train_vae"
    config_class = VAEConfig

    def build(self, accelerator):
        cfg = self.cfg
        dataset, info = load_run_dataset(cfg, accelerator)
        self.dataset = dataset
        vae = self.build_autoencoder(info)
        self.latent_shape = latent_shape(vae, info.resolution)
        self.perceptual = None
        if cfg.perceptual_weight > 0:
            self.perceptual = load_digit_cnn(cfg.perceptual_network or DEFAULT_PERCEPTUAL_NETWORK, "perceptual network",
                                             "pass --perceptual_network DIR (a folder written by "
                                             "training/train_classifier.py), or --perceptual_weight 0")
            if self.perceptual.config["in_channels"] != info.num_channels:
                raise InputError(f"the perceptual network reads {self.perceptual.config['in_channels']}-channel "
                                 f"images, the dataset has {info.num_channels}: pass --perceptual_weight 0 (or a "
                                 "network trained on such images as --perceptual_network)")
            self.perceptual.to(accelerator.device)
        discriminator = PatchDiscriminator(info.num_channels, cfg.discriminator_width) \
            if cfg.adversarial_weight > 0 else None
        return dataset, info, VAEForTraining(vae, discriminator)

    def build_autoencoder(self, info):
        """A fresh AutoencoderKL from its preset, or a trained one to go on from; with ``--train_parts decoder``
        the encoder (and its quant_conv, the layer that makes mu and log sigma^2) no longer learns: z ~ q(z | x) is
        the same function of x before and after, so a latent diffusion model trained on these latents can use the
        new decoder as it is (what Stable Diffusion's sd-vae-ft-mse did for SD 1.x)."""
        cfg = self.cfg
        if cfg.pretrained_vae is None:
            return build_vae(cfg.vae_config_name_or_path, info.resolution, info.num_channels)
        vae = load_vae(cfg.pretrained_vae, "--pretrained_vae").train()
        if vae.config.in_channels != info.num_channels or info.resolution % vae_downsample_factor(vae.config):
            raise InputError(f"--pretrained_vae {cfg.pretrained_vae} reads {vae.config.in_channels}-channel images "
                             f"in multiples of {vae_downsample_factor(vae.config)} pixels, the dataset gives "
                             f"{info.num_channels}-channel {info.resolution}x{info.resolution}: pass a VAE trained "
                             "on such images, or train one (leave --pretrained_vae out)")
        if cfg.train_parts == "decoder":
            for part in (vae.encoder, vae.quant_conv):
                part.requires_grad_(False)
        return vae

    def loss(self, model, batch, generator):
        """One step of the autoencoder (and of its discriminator):
        1. encode, draw z = mu + sigma eps, decode (VAEForTraining.forward);
        2. the reconstruction term |x - x_rec| (or squared) and the KL term;
        3. after --perceptual_start steps: the perceptual term (perceptual_distance);
        4. after --adversarial_start steps: the autoencoder's adversarial term -D(x_rec) times lambda (adaptive_weight),
           and the discriminator's hinge loss relu(1 - D(x)) + relu(1 + D(x_rec)) (Lim & Ye 2017, as in SD's recipe).
        Before its start a term is multiplied by 0, not left out, so every weight always takes part in the step."""
        cfg = self.cfg
        x = batch["pixel_values"]
        if cfg.random_flip:
            x = random_flip(x, generator)
        eps = torch.randn((x.shape[0], *self.latent_shape), generator=generator).to(x.device)
        out = model(x, eps)  # 1.
        x_rec = out["x_rec"].float()
        if cfg.reconstruction_loss == "l1":  # 2.
            reconstruction = F.l1_loss(x_rec, x.float())
        else:
            reconstruction = F.mse_loss(x_rec, x.float())
        kl = out["kl"].float().mean()
        logs = {"reconstruction": reconstruction.item(), "kl": kl.item()}
        loss_rec = reconstruction
        if self.perceptual is not None:  # 3.
            perceptual = perceptual_distance(self.perceptual, x, x_rec)
            loss_rec = loss_rec + cfg.perceptual_weight * float(self.step >= cfg.perceptual_start) * perceptual
            logs["perceptual"] = perceptual.item()
        loss = loss_rec + cfg.kl_weight * kl
        if "d_real" in out:  # 4.
            on = float(self.step >= cfg.adversarial_start)
            loss_adv = -out["d_fake_for_vae"].float().mean()
            decoder = getattr(model, "module", model).vae.decoder  # through DistributedDataParallel, if any
            lam = adaptive_weight(loss_rec, loss_adv, decoder.conv_out.weight) if on and torch.is_grad_enabled() \
                else x.new_zeros(())
            loss_d = F.relu(1 - out["d_real"].float()).mean() + F.relu(1 + out["d_fake"].float()).mean()
            loss = loss + on * (cfg.adversarial_weight * lam * loss_adv + loss_d)
            logs.update(adversarial=loss_adv.item(), adaptive_weight=lam.item(), loss_d=loss_d.item())
        self.last_logs = logs  # logged with the loss
        return loss

    def saveable(self, model):
        """The AutoencoderKL alone (the discriminator is only for training), with ``scaling_factor = 1 / std`` of the latents of the first training images."""
        vae = model.vae
        if self.cfg.train_parts == "decoder":
            return vae  # the encoder did not change: the latents, and the factor the latent models were trained with
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
    factor = vae_downsample_factor(vae.config)
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


def load_vae(path: str | Path, flag: str = "--vae"):
    """An ``AutoencoderKL`` from a folder (a VAE folder, or a pipeline folder with ``vae/``), with clear errors
    that name the command-line ``flag`` it came from."""
    folder = Path(path)
    if (folder / "model_index.json").is_file() and (folder / "vae").is_dir():
        folder = folder / "vae"  # a StableDiffusionPipeline folder: its autoencoder
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise InputError(f"{flag} {path}: no config.json there; pass a folder saved by training/train_vae.py "
                         "(or AutoencoderKL.save_pretrained), or a text-to-image pipeline folder")
    try:
        class_name = json.loads(config_file.read_text()).get("_class_name")
    except json.JSONDecodeError as e:
        raise InputError(f"{config_file} is not valid JSON ({e})") from e
    if class_name != "AutoencoderKL":
        raise InputError(f"{flag} {path} holds a {class_name}, not an AutoencoderKL; pass the output_dir of "
                         "training/train_vae.py or a pipeline's vae/ folder")
    try:
        return AutoencoderKL.from_pretrained(str(folder)).eval()
    except Exception as e:
        raise InputError(f"{flag} {path}: the weights could not be loaded ({type(e).__name__}: {e}); the file is "
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
