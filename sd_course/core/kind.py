"""What a *model kind* is: the one description of a kind of model folder that every command and the demo go by.

A kind says in one place how its folder is recognised, loaded and sampled, which inference options it takes, how its
model card is described on the Hub, and whether the demo offers it. Each course part defines its kinds in its own
folder (``sd_course/pixel/kind.py``, ``sd_course/latent/kind.py``, ``sd_course/gan/kind.py``); the registry,
``sd_course/kinds.py``, lists them. Adding a kind of model = its folder (with a ``kind.py``) + one entry there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch

from sd_course.core.errors import InputError
from sd_course.core.options import SampleOptions


@dataclass(frozen=True)
class ModelKind:
    name: str  # "ddpm", "text-to-image", "autoencoder", "gan", "analytic": what messages and cards call it
    description: str  # one line: what such a folder holds
    recognise: Callable[[str], bool]  # does this --model (a local folder, a Hub id, "analytic:NAME") hold this kind?
    load: Callable[..., object]  # (model, options: SampleOptions) -> the loaded model, on options.device
    sample: Optional[Callable[..., torch.Tensor]] = None  # (loaded, num_images, options) -> uint8 (N, C, H, W)
    image_shape: Optional[Callable[[object], tuple]] = None  # (loaded) -> (C, H, W) of its samples
    options: frozenset = frozenset({"seed", "batch_size", "device"})  # the SampleOptions it takes
    pipeline_tag: Optional[str] = None  # the Hub task of its card (None: a single model, no widget)
    tags: tuple = ()  # the Hub tags of its card, besides "diffusers", "diffusion-models-class" and "sd_course"
    card_template: Optional[str] = None  # model_cards/<file> its card is rendered from
    demo: Optional[str] = None  # the demo's Sample tab for it: "pixel" (scheduler, steps), "text" (+ prompt), None
    requires: dict = field(default_factory=dict)  # option -> why it is needed, e.g. {"prompt": "..."}

    def check_options(self, options: SampleOptions, model: str) -> None:
        """Refuse an option this kind does not take (it would be ignored silently), and a missing required one."""
        unused = sorted(set(options.given()) - self.options)
        if unused and {"prompt", "negative_prompt"} & set(unused) and not {"scheduler"} & set(unused):
            raise InputError(f"--prompt is for text-to-image models, and {model} is unconditional ({self.description}): "
                             "drop --prompt, or pass --model pipelines/mini-sd-mnist")
        if unused:
            flags = ", ".join(f"--{name}" for name in unused)
            raise InputError(f"{model} is {_article(self.name)} {self.name} model ({self.description}); it does not "
                             f"take {flags}: drop {'it' if len(unused) == 1 else 'them'}")
        for name, why in self.requires.items():
            if not getattr(options, name):
                raise InputError(f"{model} is {_article(self.name)} {self.name} model: {why}")


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def read_config(folder: str | Path, name: str) -> Optional[dict]:
    """``folder/name`` (model_index.json or config.json) as a dict; None when it is missing or not JSON."""
    path = Path(str(folder)).expanduser() / name
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None
