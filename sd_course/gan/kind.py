"""The model kind of the GAN baseline: a DCGAN generator folder (config.json + safetensors)."""

from __future__ import annotations

from sd_course.core.device import resolve_device
from sd_course.core.kind import ModelKind
from sd_course.gan.dcgan import generate, is_gan, load_generator


def load(model: str, options):
    return load_generator(model).to(resolve_device(options.device))


def sample(generator, num_images: int, options, show_progress: bool = True):
    return generate(generator, num_images, options.seed, options.batch_size)


GAN = ModelKind(
    name="gan",
    description="a DCGAN generator: it samples in one network call, without a scheduler or a prompt",
    recognise=is_gan,
    load=load,
    sample=sample,
    image_shape=lambda g: (g.config.out_channels, g.config.sample_size, g.config.sample_size),
    options=frozenset({"seed", "batch_size", "device"}),
    tags=("gan", "dcgan"),
    card_template="diffusers-model.md",
)
