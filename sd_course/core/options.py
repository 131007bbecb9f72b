"""The inference options, declared once: what ``sample``, ``evaluate``, ``compare``, ``export`` and the demo pass to
a model when they draw images (the way ``sd_course/train/config.py`` declares the training flags).

    sd-course sample --model pipelines/ddpm-mnist --scheduler dpm++-2m-sde --num_inference_steps 25 --seed 3

:class:`SampleOptions` is the dataclass; :func:`add_sample_arguments` makes the argparse flags of the fields a command
takes (help text and defaults from here), :func:`sample_options` reads them back. A model kind says which of the
options it takes (``sd_course/core/kind.py``); one it does not take is refused with a line that names it.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from dataclasses import dataclass, field
from typing import Optional


def option(default, help, **kw):
    return field(default=default, metadata=dict(help=help, **kw))


DEVICE_HELP = ("where the model runs: auto (a CUDA GPU, else Apple's mps, else the CPU), cpu, cuda, cuda:N or mps; "
               "samples of one seed agree across devices up to float rounding")
SCHEDULER_HELP = ("a diffusers scheduler class name or alias: ddpm, ddim, pndm, lms, euler, euler-a, heun, dpm++, "
                  "dpm++-2m-sde, dpm++-sde, dpm-single, kdpm2, kdpm2-a, deis, unipc, edm-euler "
                  "(default: the folder's own)")


@dataclass
class SampleOptions:
    """How to draw images from a model; ``None`` means "as the model's own config says"."""

    scheduler: Optional[str] = option(None, SCHEDULER_HELP)
    num_inference_steps: Optional[int] = option(
        None, "denoising steps (default: the scheduler's usual count, e.g. 1000 ddpm, 50 ddim, 25 dpm++)")
    eta: Optional[float] = option(None, "DDIM only: 0 deterministic, 1 DDPM-like noise")
    timestep_spacing: Optional[str] = option(
        None, "trailing, leading or linspace: place the sampler's steps so (default: as the pipeline's config says)")
    prompt: Optional[str] = option(None, 'text-to-image models: what to draw, e.g. "a handwritten seven" or "3"')
    negative_prompt: Optional[str] = option(
        None, "text-to-image models: what to steer away from (replaces the empty prompt)")
    guidance_scale: Optional[float] = option(
        None, "text-to-image models: classifier-free guidance, >= 1 (1: none; default: the guidance the model's card "
              "recommends, else 2: sd_course/latent/guidance.py)")
    height: Optional[int] = option(None, "text-to-image models: image height (default: the model's own size)")
    width: Optional[int] = option(None, "text-to-image models: image width (default: the model's own size)")
    seed: int = option(0, "same seed -> same images, whatever the batch size")
    batch_size: int = option(64, "images per forward pass (memory)")
    device: str = option("auto", DEVICE_HELP)

    def given(self) -> dict:
        """The options that differ from their defaults (what the user asked for)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) != f.default}


FIELDS = {f.name: f for f in dataclasses.fields(SampleOptions)}
TYPES = {"scheduler": str, "num_inference_steps": int, "eta": float, "timestep_spacing": str, "prompt": str,
         "negative_prompt": str, "guidance_scale": float, "height": int, "width": int, "seed": int, "batch_size": int,
         "device": str}


def add_sample_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, names, **defaults) -> None:
    """Add ``--NAME`` for each of ``names`` (fields of :class:`SampleOptions`), with its help text; ``defaults``
    override a field's default for this command (e.g. ``batch_size=250`` for evaluate)."""
    for name in names:
        f = FIELDS[name]
        default = defaults.get(name, f.default)
        help_text = f.metadata["help"]
        if name in defaults:  # this command's own default replaces the field's in the help text
            help_text = re.sub(r" ?\(default[^)]*\)", "", help_text) + f" (default {default})"
        parser.add_argument(f"--{name}", type=TYPES[name], default=default, help=help_text)


def sample_options(args: argparse.Namespace) -> SampleOptions:
    """The :class:`SampleOptions` of parsed flags (fields the command has no flag for keep their defaults)."""
    return SampleOptions(**{name: getattr(args, name) for name in FIELDS if hasattr(args, name)})

# (This module imports nothing heavy: the CLI builds its flags from it before torch is loaded.)
