"""The model kinds of Part 2: an unconditional pixel-space DDPM pipeline, and the exact (analytic) denoiser."""

from __future__ import annotations

from pathlib import Path

from sd_course.core.kind import ModelKind, read_config
from sd_course.pixel.pipeline import LOADABLE_PIPELINES, generate, load_pipeline


def _is_local(model: str) -> bool:
    return Path(model).expanduser().exists() or model.startswith((".", "/", "~")) or model.count("/") != 1


def is_ddpm(model: str) -> bool:
    """A local DDPMPipeline-style folder (model_index.json naming a UNet2DModel pipeline), or any Hub id (the
    loader checks those when it downloads them)."""
    if model.startswith("analytic:"):
        return False
    if not _is_local(model):
        return True
    index = read_config(model, "model_index.json")
    return index is not None and index.get("_class_name") in LOADABLE_PIPELINES


def load(model: str, options):
    return load_pipeline(model, options.scheduler, options.timestep_spacing, options.device)


def sample(pipe, num_images: int, options, show_progress: bool = True):
    return generate(pipe, num_images, batch_size=options.batch_size, num_inference_steps=options.num_inference_steps,
                    seed=options.seed, eta=options.eta, show_progress=show_progress)


def image_shape(pipe) -> tuple:
    size = pipe.unet.config.sample_size
    return (pipe.unet.config.in_channels, *((size, size) if isinstance(size, int) else size))


SAMPLER_OPTIONS = frozenset({"scheduler", "num_inference_steps", "eta", "timestep_spacing", "seed", "batch_size",
                             "device"})

DDPM = ModelKind(
    name="ddpm",
    description="an unconditional pixel-space DDPMPipeline: unet/ + scheduler/",
    recognise=is_ddpm,
    load=load,
    sample=sample,
    image_shape=image_shape,
    options=SAMPLER_OPTIONS,
    pipeline_tag="unconditional-image-generation",
    tags=("pytorch", "unconditional-image-generation", "ddpm"),
    card_template="ddpm-unconditional.md",
    demo="pixel",
)

ANALYTIC = ModelKind(
    name="analytic",
    description="the exact denoiser of a Gaussian mixture, analytic:mnist | analytic:gaussian | analytic:two-gaussians",
    recognise=lambda model: model.startswith("analytic:"),
    load=load,
    sample=sample,
    image_shape=image_shape,
    options=SAMPLER_OPTIONS,
    demo="pixel",
)
