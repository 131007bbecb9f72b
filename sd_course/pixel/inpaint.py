"""Inpainting: fill a masked part of a real image with an unconditional model (RePaint, Lugmayr et al. 2022).

    sd-course inpaint --model pipelines/ddpm-mnist --image digit.png --mask lower_half --output filled.png

    from sd_course.pixel.inpaint import inpaint, load_inpaint_inputs
    pipe = load_pipeline("pipelines/ddpm-mnist", "ddpm")
    filled = inpaint(pipe, *load_inpaint_inputs(pipe, "digit.png", "lower_half"))

The mask convention, everywhere in this package: True (white in a mask PNG) = the hole, the part to fill; False =
the known pixels, kept exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from sd_course.core.data import to_model_range, to_uint8
from sd_course.core.errors import InputError, check_positive_int
from sd_course.core.schedulers import alpha_bar_at, check_num_inference_steps
from sd_course.core.seeds import image_seed
from sd_course.pixel.pipeline import as_unconditional_pipeline

# Schedulers whose step() is stateless (it depends on t and x_t only), so x_t may be edited between steps.
INPAINT_SCHEDULERS = ("DDPMScheduler", "DDIMScheduler")


INPAINT_DEFAULT_STEPS = 100  # DDPM with 100 of its 1000 steps: see benchmarks/inpaint.py for what more steps buy


@torch.no_grad()
def inpaint(pipe, images_uint8: torch.Tensor, mask: torch.Tensor, num_inference_steps: int | None = None,
            seed: int = 0, resample: int = 1, eta: float | None = None, batch_size: int = 64,
            show_progress: bool = True) -> torch.Tensor:
    """Fill the pixels where ``mask`` is True (white in a mask PNG) and keep the others exactly.

        filled = inpaint(load_pipeline("pipelines/ddpm-mnist", "ddpm"), *load_inpaint_inputs(pipe, "d.png", "m.png"))
        sd-course inpaint --model pipelines/ddpm-mnist --image digit.png --mask mask.png --output out.png

    ``images_uint8``: (N, C, H, W) uint8, the images to complete; ``mask``: (H, W), (1, H, W) or (N, 1, H, W), True or
    1 = the part to fill. ``resample`` > 1 repeats each step that many times, going back up one step in between
    (RePaint's resampling with jump length 1): slower, but the filled part has more steps to agree with the rest.
    Image i draws its noise from the generator ``image_seed(seed, i)``, as in :func:`generate`.
    Returns (N, C, H, W) uint8; pixels outside the mask are those of ``images_uint8``.

    Q: What are diffusion models used for, beyond drawing random samples (applications)?
    A: Anything that can be phrased as sampling an image under a constraint, with the same trained denoiser or a
       conditional one. Text-to-image: the denoiser also reads a caption and classifier-free guidance pushes the
       samples towards it (Stable Diffusion; sd_course/latent/text_to_image.py is a small one). Inpainting and
       outpainting: keep the known pixels, generate the rest (this function, measured below). Editing (SDEdit):
       noise a real image part of the way and denoise it under a new condition. Super-resolution, colourisation,
       deblurring: sampling conditioned on the degraded image. Beyond images: audio, video, 3-D shapes, molecules,
       robot trajectories. And because DDIM's ODE maps an image to its noise and back, likelihoods, interpolation
       between images and image-to-noise inversion come with it.
    Cmd: sd-course inpaint --model pipelines/ddpm-mnist --image digit.png --mask lower_half --num_images 3 --output filled.png --figure inpaint.png
    Fig: docs/figures/inpaint.png

    Q: How can a model that was only trained to generate fill in a missing part of an image (inpainting)?
    A: By constraining the reverse process (RePaint, Lugmayr et al. 2022). At every step we know what the *known*
       pixels should look like at noise level t: the forward process gives them in one jump,
       ``sqrt(abar_t) x_known + sqrt(1 - abar_t) eps``. So after each reverse step, from t to the next timestep t',
       we overwrite the known region with that and keep the model's proposal only inside the mask:
       ``x_{t'} = (1 - m) * noised(x_known, t') + m * step(x_t)``, with m = 1 (True, white in a mask PNG) in the hole
       and 0 on the known pixels, the package's one mask convention (``fill`` and ``keep`` below). The network never
       needs to know about the mask: each denoising step sees an x_t whose known part is consistent with the real
       image, and its prediction of x_0 for the hole is pulled towards what fits around it. At the last step the
       known pixels are the original ones exactly. Measured (benchmarks/inpaint.py, the shipped model, lower half of 200
       MNIST test digits hidden): the shipped classifier reads the true digit in
       [71.0%](benchmarks/results/inpaint_ddpm50.json#inpainted.accuracy*100) +- [3.2%](benchmarks/results/inpaint_ddpm50.json#inpainted.accuracy_se*100) of the
       fills (DDPM, 50 steps), against [50.0%](benchmarks/results/inpaint_ddpm50.json#blank.accuracy*100) +- [3.5%](benchmarks/results/inpaint_ddpm50.json#blank.accuracy_se*100) with the half left blank and
       [100%](benchmarks/results/inpaint_ddpm50.json#original.accuracy*100) for the whole digits; 25 steps with one RePaint resampling each (49 model calls) give
       [66.0%](benchmarks/results/inpaint_ddpm25_resample2.json#inpainted.accuracy*100) +- [3.3%](benchmarks/results/inpaint_ddpm25_resample2.json#inpainted.accuracy_se*100). A fill is
       a plausible digit, not necessarily the original: the top half of a 2 is also the top of a 3, and
       different seeds finish it differently (docs/figures/inpaint.png).
    Cmd: python benchmarks/inpaint.py --threads 1
    Fig: docs/figures/inpaint.png
    """
    pipe = as_unconditional_pipeline(pipe)
    if type(pipe.scheduler).__name__ not in INPAINT_SCHEDULERS:
        raise InputError(f"inpainting edits x_t between steps, which only stateless schedulers allow; "
                         f"{type(pipe.scheduler).__name__} keeps a history of past steps. Use --scheduler ddpm "
                         "(default) or ddim")
    images_uint8, mask = _check_inpaint_inputs(pipe, images_uint8, mask)
    resample = check_positive_int(resample, "resample")
    batch_size = check_positive_int(batch_size, "batch_size")
    steps = check_num_inference_steps(pipe.scheduler, num_inference_steps or INPAINT_DEFAULT_STEPS)
    prediction_type = pipe.scheduler.config.get("prediction_type", "epsilon")
    abar = pipe.training_alphas_cumprod
    device, dtype = pipe._execution_device, pipe.unet.dtype
    out = torch.empty_like(images_uint8)
    with tqdm(total=len(images_uint8), desc=f"inpainting ({type(pipe.scheduler).__name__}, {steps} steps)",
              unit="img", disable=not show_progress) as bar:
        for start in range(0, len(images_uint8), batch_size):
            x_known = to_model_range(images_uint8[start:start + batch_size]).to(device, dtype)
            n = len(x_known)
            fill = (mask[start:start + n] if len(mask) > 1 else mask).to(device, dtype)  # 1 = fill
            keep = 1 - fill
            generators = [torch.Generator().manual_seed(image_seed(seed, start + i)) for i in range(n)]
            step_kwargs = pipe._step_kwargs(generators, eta)

            def noised(t):  # the known image at noise level t (one jump of the forward process); t None = clean
                if t is None:
                    return x_known
                eps = randn_tensor(x_known.shape, generator=generators, device=device, dtype=dtype)
                return pipe.scheduler.add_noise(x_known, eps, t.reshape(1))

            pipe.scheduler.set_timesteps(steps, device=device)
            timesteps = pipe.scheduler.timesteps
            sample = randn_tensor(x_known.shape, generator=generators, device=device, dtype=dtype)
            sample = keep * noised(timesteps[0]) + fill * sample
            for i, t in enumerate(timesteps):
                t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else None
                repeats = resample if t_prev is not None else 1  # the last step lands on x_0: nothing to go back to
                for r in range(repeats):
                    model_output = pipe.unet(sample, t).sample
                    generated = pipe._step(model_output, t, sample, prediction_type, **step_kwargs).prev_sample
                    sample = keep * noised(t_prev) + fill * generated  # RePaint: known part from the forward process
                    if r + 1 < repeats:  # go back up one step, x_t ~ q(x_t | x_{t_prev}), and do this step again
                        a = (alpha_bar_at(t.cpu(), abar) / alpha_bar_at(t_prev.cpu(), abar)).to(dtype)
                        z = randn_tensor(sample.shape, generator=generators, device=device, dtype=dtype)
                        sample = a.sqrt() * sample + (1 - a).sqrt() * z
            out[start:start + n] = to_uint8(sample.float().cpu())
            bar.update(n)
    return out


def _check_inpaint_inputs(pipe, images_uint8, mask) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, C, H, W) uint8 images of the model's size and channels, and a {0, 1} mask of shape (1 or N, 1, H, W)."""
    size = pipe.unet.config.sample_size
    hw = (size, size) if isinstance(size, int) else tuple(size)
    channels = pipe.unet.config.in_channels
    if not isinstance(images_uint8, torch.Tensor) or images_uint8.dtype != torch.uint8 or images_uint8.ndim != 4:
        raise InputError("inpaint takes the images as a uint8 tensor (N, C, H, W); load a PNG with "
                         "sd_course.pixel.inpaint.load_inpaint_inputs")
    if tuple(images_uint8.shape[1:]) != (channels, *hw):
        raise InputError(f"the image is {images_uint8.shape[1]}-channel {images_uint8.shape[2]}x"
                         f"{images_uint8.shape[3]}, but the model makes {channels}-channel {hw[0]}x{hw[1]} images; "
                         f"resize it to {hw[0]}x{hw[1]} first")
    mask = torch.as_tensor(mask)
    while mask.ndim < 4:
        mask = mask.unsqueeze(0)
    if mask.shape[1] != 1 or tuple(mask.shape[2:]) != hw or mask.shape[0] not in (1, len(images_uint8)):
        raise InputError(f"the mask has shape {tuple(mask.shape)}; it must be one {hw[0]}x{hw[1]} mask (the image's "
                         "size), or one per image")
    values = torch.unique(mask.float())
    if not set(values.tolist()) <= {0.0, 1.0}:
        raise InputError(f"the mask must hold only 0 (keep) and 1 (fill), got values {values[:5].tolist()}...")
    if not mask.bool().any():
        raise InputError("the mask is empty: nothing to fill. Paint the part to fill white in the mask")
    return images_uint8, mask.float()


NAMED_MASKS = ("lower_half", "upper_half", "left_half", "right_half", "center")


def _named_mask(name: str, size: tuple[int, int]):
    """A mask PNG drawn from its name (``--mask lower_half``): white = fill."""
    w, h = size
    box = dict(lower_half=(0, h // 2, w, h), upper_half=(0, 0, w, h // 2), left_half=(0, 0, w // 2, h),
               right_half=(w // 2, 0, w, h), center=(w // 4, h // 4, w - w // 4, h - h // 4))[name]
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=255)
    return mask


def load_inpaint_inputs(pipe, image_path, mask_path) -> tuple[torch.Tensor, torch.Tensor]:
    """A PNG to complete and its mask PNG (white = fill, black = keep) -> ((1, C, H, W) uint8, (1, 1, H, W) {0, 1}).
    ``mask_path`` may also name a mask: lower_half, upper_half, left_half, right_half, center.

    The image must already have the model's size and channels (a digit: 28x28 grayscale); the mask the same size
    and only (nearly) black and white pixels: grey levels between 32 and 223 on more than 1% of it are refused.
    """
    size = pipe.unet.config.sample_size
    hw = (size, size) if isinstance(size, int) else tuple(size)
    channels = pipe.unet.config.in_channels
    opened = []
    named = str(mask_path) in NAMED_MASKS
    for path, what in ((image_path, "--image"),) + ((() if named else ((mask_path, "--mask"),))):
        path = Path(path).expanduser()
        if not path.is_file():
            masks = f", or name a mask: {', '.join(NAMED_MASKS)}" if what == "--mask" else ""
            raise InputError(f"{what} {str(path)!r} is not a file; pass a PNG image{masks}")
        try:
            opened.append(Image.open(path))
            opened[-1].load()
        except OSError as e:
            raise InputError(f"{what} {str(path)!r} is not an image PIL can read ({e}); pass a PNG") from e
    image = opened[0]
    mask_image = _named_mask(str(mask_path), image.size) if named else opened[1]
    if (image.height, image.width) != hw:
        raise InputError(f"--image is {image.width}x{image.height}, but the model makes {hw[1]}x{hw[0]} images; "
                         f"resize it first, e.g. Image.open(p).resize(({hw[1]}, {hw[0]})).save(p)")
    want = "L" if channels == 1 else "RGB"
    if image.mode != want:
        rgb = image.convert("RGB")
        grey_rgb = rgb.getchannel(0).tobytes() == rgb.getchannel(1).tobytes() == rgb.getchannel(2).tobytes()
        convertible = image.mode in (("L", "LA", "1") if channels == 1 else ("RGBA", "P"))
        if not (convertible or channels == 1 and grey_rgb):
            raise InputError(f"--image is a {image.mode} image, but the model makes "
                             f"{'grayscale (L)' if channels == 1 else 'RGB'} images; convert it first, e.g. "
                             f"Image.open(p).convert({want!r}).save(p)")
        image = image.convert(want)
    if (mask_image.height, mask_image.width) != hw:
        raise InputError(f"--mask is {mask_image.width}x{mask_image.height}, but --image is {hw[1]}x{hw[0]}; "
                         "draw the mask at the image's size")
    grey = torch.from_numpy(np.array(mask_image.convert("L"), dtype=np.uint8)).reshape(1, 1, *hw)
    in_between = ((grey >= 32) & (grey <= 223)).float().mean().item()
    if in_between > 0.01:
        raise InputError(f"--mask is not black and white: {in_between:.0%} of its pixels are grey (32..223); paint "
                         "the part to fill pure white (255) and the rest pure black (0)")
    pixels = torch.from_numpy(np.array(image, dtype=np.uint8)).reshape(*hw, channels).permute(2, 0, 1)
    return pixels.unsqueeze(0), (grey >= 128).float()
