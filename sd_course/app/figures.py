"""What the picture commands run: load a model, sample or noise, draw, save. ``sd_course/app/cli.py`` only forwards
its arguments here.

    sd-course sample     --model runs/mnist --scheduler dpm++ --num_images 64 --output grid.png
    sd-course trajectory --model runs/mnist --scheduler ddim --num_images 4 --output_dir figures/
    sd-course forward    --timesteps 0,50,100,250,500,750,999 --output forward.png
    sd-course schedules  --output schedules.png
    sd-course inpaint    --model pipelines/ddpm-mnist --image digit.png --mask lower_half --output filled.png
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from sd_course.core.data import _open_image, channels_of, image_to_uint8, load_images
from sd_course.core.errors import InputError, check_positive_int
from sd_course.core.images import (
    check_output_dir,
    check_output_file,
    check_sample_outputs,
    save_grid,
    to_pil_images,
    write_sample_outputs,
)
from sd_course.core.options import SampleOptions
from sd_course.core.plots import (
    _save_figure,
    forward_figure,
    inpaint_figure,
    parse_timesteps,
    schedules_figure,
    trajectory_figure,
    trajectory_gif,
)
from sd_course.core.schedulers import check_steps_value, resolve_scheduler_name
from sd_course.kinds import kind_of, resolve_model
from sd_course.latent.guidance import recommended_guidance
from sd_course.pixel.inpaint import inpaint, load_inpaint_inputs
from sd_course.pixel.pipeline import load_pipeline, record_trajectory


def write_samples(model=None, options: SampleOptions | None = None, num_images: int = 16, output=None,
                  output_dir=None, show_progress: bool = True) -> dict:
    """``sd-course sample``: a grid PNG (``output``) and/or one PNG per image (``output_dir``), from any model kind
    that samples (``sd_course/kinds.py``): a DDPM pipeline, a text-to-image pipeline with a prompt, a GAN, ..."""
    options = options or SampleOptions()
    output, output_dir = check_sample_outputs(output, output_dir)
    check_positive_int(num_images, "num_images")
    check_positive_int(options.batch_size, "batch_size")
    if options.scheduler is not None:
        resolve_scheduler_name(options.scheduler)  # a typo in the name fails now, not after loading the weights
    check_steps_value(options.num_inference_steps)  # and so does a bad count
    kind = kind_of(model)
    if kind.sample is None:
        raise InputError(f"{model} is {kind.description}: there is nothing to sample; pass a pipeline folder")
    kind.check_options(options, model or "the default model")
    guidance = None
    if "guidance_scale" in kind.options and options.guidance_scale is None:  # say which one the card recommended
        guidance = recommended_guidance(resolve_model(model))
        options = dataclasses.replace(options, guidance_scale=guidance)
    loaded = kind.load(resolve_model(model), options)
    images = kind.sample(loaded, num_images, options, show_progress=show_progress)
    written = write_sample_outputs(images, output, output_dir)
    if guidance is not None:
        written["recommended_guidance"] = guidance
    return written


def write_trajectory(model=None, scheduler=None, num_inference_steps=None, num_images=4, seed=0, eta=None,
                     num_frames=8, steps=None, output_dir=".", name="trajectory", show_progress=True,
                     device: str | None = "auto") -> dict:
    """``sd-course trajectory``: ``<output_dir>/<name>.png`` (strip) and ``<name>.gif`` (animation).

    ``steps``: model-call indices to show in the strip (``"0,10,49"``; negative counts from the end), else
    ``num_frames`` evenly spaced ones. The GIF shows every call (at most 60 frames).
    """
    folder = check_output_dir(output_dir)
    png, gif = check_output_file(folder / f"{name}.png"), check_output_file(folder / f"{name}.gif", (".gif",))
    if int(num_frames) < 1:
        raise InputError(f"--num_frames must be at least 1, got {num_frames}")
    check_steps_value(num_inference_steps)
    pipe = load_pipeline(model, scheduler, device=device)
    record = record_trajectory(pipe, num_images, num_inference_steps, seed, eta=eta, show_progress=show_progress)
    frames = None
    if steps is not None:
        calls = record["num_model_calls"]
        try:
            wanted = [int(s) for s in str(steps).split(",") if s.strip()]
        except ValueError as e:
            raise InputError(f"--steps must be model-call indices separated by commas, e.g. 0,10,49; got {steps!r}") \
                from e
        bad = [s for s in wanted if not -calls <= s < calls]
        if bad or not wanted:
            raise InputError(f"--steps {bad or steps!r} outside 0..{calls - 1} (this run makes {calls} model calls)")
        frames = sorted({s % calls for s in wanted})
    fig = trajectory_figure(record, frames, num_frames)
    return dict(png=str(_save_figure(fig, png)), gif=str(trajectory_gif(record, gif)))


def write_forward(output="forward.png", image=None, dataset_name=None, num_images=3,
                  timesteps="0,50,100,250,500,750,999", beta_schedule="linear", num_train_timesteps=1000,
                  resolution=None, seed=0) -> str:
    """``sd-course forward``: the forward noising of real images (a file, or the first images of a dataset)."""
    output = check_output_file(output)
    steps = parse_timesteps(timesteps, int(num_train_timesteps))
    if int(num_images) < 1:
        raise InputError(f"--num_images must be at least 1, got {num_images}")
    if image is not None and dataset_name is not None:
        raise InputError("give either --image or --dataset_name, not both")
    if image is not None:
        if not Path(image).is_file():
            raise InputError(f"--image {image!r} is not a file; pass the path of a PNG/JPEG image")
        pil = _open_image({"path": str(image)}, 0)
        mode = "L" if channels_of(pil.mode) == 1 else "RGB"
        images = image_to_uint8(pil, int(resolution or min(pil.size)), mode)[None]
    else:
        images, _ = load_images(dataset_name or "builtin:mnist-2k:train", resolution, int(num_images),
                                show_progress=False)
    fig = forward_figure(images, steps, beta_schedule, int(num_train_timesteps), seed)
    return str(_save_figure(fig, output))


def write_schedules(output="schedules.png", schedules="linear,scaled_linear,squaredcos_cap_v2,sigmoid",
                    num_train_timesteps=1000) -> str:
    """``sd-course schedules``: alpha_bar_t, beta_t and log-SNR of the beta schedules on one figure."""
    output = check_output_file(output)
    names = [s.strip() for s in str(schedules).split(",") if s.strip()]
    if not names:
        raise InputError("--schedules is empty; give e.g. linear,squaredcos_cap_v2")
    fig = schedules_figure(names, int(num_train_timesteps))
    return str(_save_figure(fig, output))


def write_inpainting(model=None, image=None, mask=None, output="inpainted.png", scheduler="ddpm",
                     num_inference_steps=None, num_images=1, seed=0, resample=1, figure=None,
                     show_progress=True, device: str | None = "auto") -> dict:
    """``sd-course inpaint``: fill the white part of ``mask`` in ``image``; ``output`` gets the filled image (a grid of
    ``num_images`` fills, seeds ``seed``, ``seed + 1``, ...), ``figure`` (optional) original | mask | input | fills."""
    output = check_output_file(output)
    if figure is not None:
        figure = check_output_file(figure)
    if int(num_images) < 1:
        raise InputError(f"--num_images must be at least 1, got {num_images}")
    check_steps_value(num_inference_steps)
    pipe = load_pipeline(model, scheduler or "ddpm", device=device)
    pixels, mask_tensor = load_inpaint_inputs(pipe, image, mask)
    fills = [inpaint(pipe, pixels, mask_tensor, num_inference_steps, seed=seed + k, resample=resample,
                     show_progress=show_progress) for k in range(int(num_images))]
    if len(fills) == 1:
        to_pil_images(fills[0])[0].save(output)  # the image itself, at its own size: it can be inpainted again
    else:
        save_grid(torch.cat(fills), output, cols=len(fills))
    written = dict(output=str(output))
    if figure is not None:
        written["figure"] = str(_save_figure(inpaint_figure(pixels, mask_tensor, fills), figure))
    return written

