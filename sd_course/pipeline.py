"""Sampling: load a saved pipeline folder and generate images (placeholder API; see issue 3).

    load_pipeline(model, scheduler=None) -> a diffusers pipeline
    generate(pipe, num_images, batch_size, num_inference_steps, seed, eta=None, show_progress=True)
        -> uint8 tensor (N, C, H, W)
"""

from __future__ import annotations

import torch
from diffusers import DDPMPipeline

from sd_course.data import to_uint8


def load_pipeline(model: str, scheduler: str | None = None):
    return DDPMPipeline.from_pretrained(model)


@torch.no_grad()
def generate(pipe, num_images: int, batch_size: int = 64, num_inference_steps: int = 1000, seed: int = 0,
             eta: float | None = None, show_progress: bool = True) -> torch.Tensor:
    out = []
    generator = torch.Generator().manual_seed(seed)
    pipe.set_progress_bar_config(disable=not show_progress)
    for start in range(0, num_images, batch_size):
        n = min(batch_size, num_images - start)
        images = pipe(batch_size=n, generator=generator, num_inference_steps=num_inference_steps,
                      output_type="pt").images  # (n, H, W, C) in [0, 1]
        images = torch.as_tensor(images).permute(0, 3, 1, 2) * 2 - 1
        out.append(to_uint8(images))
    return torch.cat(out)
