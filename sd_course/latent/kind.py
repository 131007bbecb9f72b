"""The model kinds of Part 3: a text-to-image StableDiffusionPipeline, and a single AutoencoderKL folder."""

from __future__ import annotations

from sd_course.core.device import resolve_device
from sd_course.core.errors import InputError
from sd_course.core.kind import ModelKind, read_config
from sd_course.core.schedulers import check_num_inference_steps
from sd_course.latent.autoencoder import load_vae
from sd_course.latent.guidance import check_guidance_and_size, generate_from_prompts, recommended_guidance
from sd_course.latent.text import check_prompt
from sd_course.latent.text_to_image import is_text_to_image, load_text_to_image_pipeline


def load(model: str, options):
    pipe = load_text_to_image_pipeline(model, options.scheduler)
    return pipe.to(resolve_device(options.device))


def sample(pipe, num_images: int, options, show_progress: bool = True):
    """``num_images`` images of ``options.prompt``, guided by ``options.guidance_scale`` (default: the guidance the
    model's card recommends); a word the model never saw or a prompt longer than the text encoder reads is reported
    (a warning), then drawn all the same."""
    if not (options.prompt or "").strip():
        raise InputError("--prompt is empty: say which digit you want, e.g. --prompt \"the number 3\" (an empty prompt "
                         "is the unconditional model; guidance needs something to follow)")
    guidance = options.guidance_scale if options.guidance_scale is not None else recommended_guidance(pipe.name_or_path)
    check_guidance_and_size(pipe, guidance, options.height, options.width)
    for text, what in ((options.prompt, "prompt"), (options.negative_prompt, "negative prompt")):
        if text:
            check_prompt(pipe.tokenizer, text, what)
    steps = check_num_inference_steps(pipe.scheduler, options.num_inference_steps)
    return generate_from_prompts(pipe, [options.prompt], num_images, steps, guidance,
                                 options.negative_prompt, options.seed, options.batch_size,
                                 show_progress=show_progress, height=options.height, width=options.width)


def image_shape(pipe) -> tuple:
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    return (pipe.vae.config.out_channels, size, size)


TEXT_TO_IMAGE = ModelKind(
    name="text-to-image",
    description="a StableDiffusionPipeline: vae/ text_encoder/ tokenizer/ unet/ scheduler/",
    recognise=is_text_to_image,
    load=load,
    sample=sample,
    image_shape=image_shape,
    options=frozenset({"scheduler", "num_inference_steps", "prompt", "negative_prompt", "guidance_scale", "height",
                       "width", "seed", "batch_size", "device"}),
    pipeline_tag="text-to-image",
    tags=("text-to-image", "stable-diffusion", "stable-diffusion-diffusers"),
    card_template="text-to-image.md",
    demo="text",
    requires={"prompt": 'pass --prompt "a handwritten seven" (and optionally --guidance_scale, --negative_prompt)'},
)


def is_autoencoder(model: str) -> bool:
    config = read_config(model, "config.json")
    return config is not None and config.get("_class_name") == "AutoencoderKL"


AUTOENCODER = ModelKind(
    name="autoencoder",
    description="a single AutoencoderKL (config.json + safetensors): it encodes and decodes, it does not sample",
    recognise=is_autoencoder,
    load=lambda model, options: load_vae(model).to(resolve_device(options.device)),
    options=frozenset({"device"}),
    tags=("autoencoder", "vae"),
    card_template="diffusers-model.md",
)
