"""The latent-space lesson, as numbers and pictures: what the autoencoder keeps, how its space is shaped, and the
*other* latent space of the course, the starting noise x_T of a deterministic sampler.

    sd-course latents --vae pipelines/mini-sd-mnist/vae --output_dir figures/latents/
    sd-course latents --vae runs/vae-mnist --model pipelines/ddpm-mnist --output_dir figures/latents/

writes (docs/latent_space.md shows and explains each):

    channels.png        digit -> its 4 latent channels (8x8 each) -> reconstruction
    interpolation.png   two digits mixed in pixel space (a cross-fade) and in latent space (a morph)
    ddim_inversion.png  digit -> x_T by running DDIM backwards -> the same digit again (pixel model)
    noise_path.png      spherical interpolation between two noises x_T, each decoded by DDIM: a path of digits
    latents.json        the numbers: compression, reconstruction MSE/PSNR, latent statistics, inversion error

Q: Is x_T a latent code?
A: For a deterministic sampler, yes. DDIM with eta = 0 (Song et al. 2021) integrates an ODE, the probability-flow
   ODE, so each x_T maps to exactly one image and the map can be run backwards: DDIM inversion takes a real digit to
   "its" noise x_T, and sampling from that x_T gives the digit back (the figure measures how exactly). Unlike the
   VAE's 256 numbers, this code is as large as the image (no compression) and it is not learned by an encoder but
   defined by the denoiser. Between two noises one must interpolate *spherically* (slerp): a straight line through
   the middle of a Gaussian passes through points of too small a norm, which the model never saw as x_T.
Cmd: sd-course latents --vae pipelines/mini-sd-mnist/vae --output_dir docs/figures/latents
Fig: docs/figures/latents/ddim_inversion.png
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from diffusers import DDIMScheduler

from sd_course.core.data import load_images, to_model_range, to_uint8
from sd_course.core.device import resolve_device
from sd_course.core.errors import InputError
from sd_course.core.images import check_output_dir, image_grid
from sd_course.core.provenance import write_result
from sd_course.latent.autoencoder import decode, encode, load_vae, prepare_images
from sd_course.latent.text_to_image import default_vae_path
from sd_course.pixel.pipeline import default_model_path, load_pipeline, x0_from_model_output

# ----------------------------------------------------------------------------------------------------------------
# The autoencoder's latent space
# ----------------------------------------------------------------------------------------------------------------


def crop_to(images: torch.Tensor, size: int) -> torch.Tensor:
    """Centre crop (N, C, H, W) to size x size (32 -> 28 undoes the padding of the digits)."""
    h, w = images.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return images[..., top:top + size, left:left + size]


def reconstruct(vae, images_uint8: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 digits -> (scaled latents, uint8 reconstructions of the same size as the input)."""
    x = prepare_images(images_uint8, vae)
    z = encode(vae, x)
    return z, crop_to(to_uint8(decode(vae, z)), images_uint8.shape[-1])


def reconstruction_metrics(originals_uint8: torch.Tensor, reconstructions_uint8: torch.Tensor) -> dict:
    """MSE on pixels in [0, 1] and PSNR = 10 log10(1 / MSE), over all images."""
    a, b = originals_uint8.float() / 255, reconstructions_uint8.float() / 255
    mse = float((a - b).pow(2).mean())
    return {"mse": mse, "psnr_db": 10 * math.log10(1 / mse) if mse > 0 else float("inf")}


def latent_statistics(vae, latents_scaled: torch.Tensor) -> dict:
    """Mean and std of the latents before scaling (the raw z) and after (what the diffusion model sees)."""
    raw = latents_scaled / vae.config.scaling_factor
    return {"scaling_factor": vae.config.scaling_factor,
            "raw": {"mean": float(raw.mean()), "std": float(raw.std())},
            "scaled": {"mean": float(latents_scaled.mean()), "std": float(latents_scaled.std())},
            "per_channel_std_scaled": [float(s) for s in latents_scaled.std(dim=(0, 2, 3))]}


def channels_figure(originals, latents, reconstructions, metrics: dict):
    """Rows: a digit, its latent channels (each 8x8, grey = 0), its reconstruction."""
    n, c = len(originals), latents.shape[1]
    fig, axes = plt.subplots(n, c + 2, figsize=(1.3 * (c + 2), 1.4 * n + 0.6), squeeze=False)
    limit = float(latents.abs().max())
    for i in range(n):
        axes[i, 0].imshow(originals[i, 0], cmap="gray", vmin=0, vmax=255)
        for k in range(c):
            axes[i, 1 + k].imshow(latents[i, k], cmap="RdBu_r", vmin=-limit, vmax=limit)
        axes[i, c + 1].imshow(reconstructions[i, 0], cmap="gray", vmin=0, vmax=255)
    titles = ["digit"] + [f"z[{k}]" for k in range(c)] + ["decoded"]
    for k, title in enumerate(titles):
        axes[0, k].set_title(title, fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    pixels = originals[0].numel()
    fig.suptitle(f"{pixels} pixels -> {latents[0].numel()} latent numbers ({pixels / latents[0].numel():.1f}x "
                 f"fewer); PSNR {metrics['psnr_db']:.1f} dB", fontsize=10)
    fig.tight_layout()
    return fig


def interpolate_pixels_and_latents(vae, a_uint8: torch.Tensor, b_uint8: torch.Tensor, steps: int = 8):
    """Two rows of ``steps`` images from digit a to digit b: mixed in pixel space, and mixed in latent space."""
    w = torch.linspace(0, 1, steps).view(-1, 1, 1, 1)
    pixels = ((1 - w) * a_uint8.float() + w * b_uint8.float()).round().to(torch.uint8)  # (1 - w) a + w b
    za, zb = encode(vae, prepare_images(torch.stack([a_uint8, b_uint8]), vae))
    morph = crop_to(to_uint8(decode(vae, (1 - w) * za + w * zb)), a_uint8.shape[-1])  # decode((1 - w) z_a + w z_b)
    return pixels, morph


# ----------------------------------------------------------------------------------------------------------------
# The other latent space: x_T of DDIM (eta = 0)
# ----------------------------------------------------------------------------------------------------------------


def _ddim_grid(pipe, num_inference_steps: int) -> tuple[list[int], torch.Tensor]:
    """Ascending timesteps t_1 < ... < t_N of DDIM with N steps, and the training alpha_bar table."""
    scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(num_inference_steps)
    return sorted(int(t) for t in scheduler.timesteps), scheduler.alphas_cumprod.double()


def _x0_and_eps(pipe, x, t: int, alpha_bar):
    """The model's clean-image estimate and noise estimate at (x_t, t), whatever its prediction type."""
    device = pipe.unet.device
    t_batch = torch.full((x.shape[0],), t, dtype=torch.long, device=device)
    output = pipe.unet(x.float().to(device), t_batch).sample.double().cpu()
    x0 = x0_from_model_output(output, x, alpha_bar, pipe.scheduler.config.prediction_type)
    eps = (x - alpha_bar.sqrt() * x0) / (1 - alpha_bar).sqrt()  # the forward formula solved for eps
    return x0, eps


@torch.no_grad()
def ddim_invert(pipe, x0: torch.Tensor, num_inference_steps: int = 50) -> torch.Tensor:
    """Image (in [-1, 1]) -> x_T: the DDIM update run from t_1 up to t_N (the ODE integrated backwards).

    Each step keeps the current noise estimate and moves to the next, noisier level:
        x_{t+} = sqrt(abar_{t+}) x0_hat(x_t) + sqrt(1 - abar_{t+}) eps_hat(x_t)
    """
    ts, abar = _ddim_grid(pipe, num_inference_steps)
    x = x0.double()
    for i, t in enumerate(ts):
        t_prev = ts[i - 1] if i else ts[0]  # the image itself is taken as x_{t_1}: t_1 is almost noise-free
        x0_hat, eps = _x0_and_eps(pipe, x, t_prev, abar[t_prev])
        x = abar[t].sqrt() * x0_hat + (1 - abar[t]).sqrt() * eps
    return x.float()


@torch.no_grad()
def ddim_generate(pipe, x_T: torch.Tensor, num_inference_steps: int = 50) -> torch.Tensor:
    """x_T -> image: DDIM with eta = 0 from t_N down, deterministic (Song et al. 2021, eq. 12 with sigma = 0)."""
    ts, abar = _ddim_grid(pipe, num_inference_steps)
    x = x_T.double()
    for i in reversed(range(len(ts))):
        x0_hat, eps = _x0_and_eps(pipe, x, ts[i], abar[ts[i]])
        if i == 0:
            return x0_hat.clamp(-1, 1).float()
        x = abar[ts[i - 1]].sqrt() * x0_hat + (1 - abar[ts[i - 1]]).sqrt() * eps
    return x.float()


def slerp(a: torch.Tensor, b: torch.Tensor, w: float) -> torch.Tensor:
    """Spherical interpolation: the path between two Gaussian draws along which the norm stays typical."""
    omega = torch.arccos(torch.clamp((a * b).sum() / (a.norm() * b.norm()), -1.0, 1.0))
    if omega.abs() < 1e-6:
        return (1 - w) * a + w * b
    return (torch.sin((1 - w) * omega) * a + torch.sin(w * omega) * b) / torch.sin(omega)


# ----------------------------------------------------------------------------------------------------------------
# The lesson in one call (`sd-course latents`)
# ----------------------------------------------------------------------------------------------------------------


def write_latent_lesson(vae_path: str | None = None, model: str | None = None, output_dir: str = "figures/latents",
                        dataset: str = "builtin:mnist-2k:train", num_digits: int = 6, num_eval: int = 1000,
                        num_inference_steps: int = 50, seed: int = 0, device: str | None = "auto") -> dict:
    """All the figures and numbers of the lesson; returns the numbers (also written to latents.json).

    ``vae_path``: an AutoencoderKL folder or a text-to-image pipeline (default: the shipped one); ``model``: a pixel
    pipeline for the DDIM part (default: the shipped pipelines/ddpm-mnist; ``none`` skips that part)."""
    for name, value in (("--num_digits", num_digits), ("--num_eval", num_eval),
                        ("--num_inference_steps", num_inference_steps)):
        if value <= 0:
            raise InputError(f"{name} must be positive, got {value}")
    out = check_output_dir(output_dir)
    vae = load_vae(vae_path or default_vae_path()).to(resolve_device(device))
    images, labels = load_images(dataset, num_images=max(num_eval, num_digits), show_progress=False)
    # One digit of each class first, so the figures show different digits.
    order = [int((labels == d).nonzero()[0]) for d in range(10) if (labels == d).any()] if labels is not None else []
    shown = images[order[:num_digits]] if len(order) >= num_digits else images[:num_digits]

    latents, recon = reconstruct(vae, images[:num_eval])
    numbers = {"vae": str(vae_path or default_vae_path()), "dataset": dataset, "num_images": len(recon),
               "pixels_per_image": int(images[0].numel()), "latent_numbers_per_image": int(latents[0].numel()),
               "reconstruction": reconstruction_metrics(images[:num_eval], recon),
               "latents": latent_statistics(vae, latents)}
    numbers["compression"] = numbers["pixels_per_image"] / numbers["latent_numbers_per_image"]
    shown_latents, shown_recon = reconstruct(vae, shown)
    fig = channels_figure(shown, shown_latents, shown_recon, reconstruction_metrics(shown, shown_recon))
    fig.savefig(out / "channels.png", dpi=110)
    pixels, morph = interpolate_pixels_and_latents(vae, shown[0], shown[1])
    image_grid(torch.cat([pixels, morph]), cols=len(pixels)).save(out / "interpolation.png")

    if model != "none":
        pipe = load_pipeline(model, device=device)
        x0 = to_model_range(shown[:4]).float()
        x_T = ddim_invert(pipe, x0, num_inference_steps)
        back = ddim_generate(pipe, x_T, num_inference_steps)
        image_grid(torch.cat([to_uint8(x0), to_uint8(x_T.clamp(-3, 3) / 3), to_uint8(back)]), cols=4).save(
            out / "ddim_inversion.png")
        numbers["ddim_inversion"] = {"model": str(model or "pipelines/ddpm-mnist"), "steps": num_inference_steps,
                                     **reconstruction_metrics(to_uint8(x0), to_uint8(back)),
                                     "x_T_std": float(x_T.std())}
        g = torch.Generator().manual_seed(seed)
        a, b = (torch.randn((1, *x0.shape[1:]), generator=g) for _ in range(2))
        path = torch.cat([slerp(a, b, w) for w in torch.linspace(0, 1, 8).tolist()])
        image_grid(to_uint8(ddim_generate(pipe, path, num_inference_steps)), cols=8).save(out / "noise_path.png")
    used = [vae_path or default_vae_path()] + ([] if model == "none" else [str(model) if model else str(default_model_path())])
    write_result(out / "latents.json", numbers, inputs=[p for p in used if Path(p).exists()], device=vae.device)
    return numbers
