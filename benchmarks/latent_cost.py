"""Why Stable Diffusion diffuses in latent space: one training step on 4x8x8 latents vs on 1x28x28 pixels.

    python benchmarks/latent_cost.py

Times, in one process and interleaved (A B A B ...) so that both see the same machine, a full optimisation step
(forward, backward, AdamW) of:
* pixel: the `mnist` UNet2DModel preset on 1x28x28 digits, batch 64, bf16 autocast (the shipped pixel recipe);
* latent: the `mini-sd` UNet2DConditionModel + CLIPTextModel on 4x8x8 latents with 16-token captions, batch 256,
  fp32 (the mini Stable Diffusion recipe; the VAE is frozen and its latents cached, so it costs nothing per step).
Prints images/s of each, the ratio, and what "100 epochs of MNIST" (6M images) costs each on this machine.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from sd_course.core.models import build_conditional_unet, build_text_encoder, build_unet, count_parameters
from sd_course.latent.text_to_image import TextConditionedUNet


def step_timer(model, make_batch, forward, batch_size: int, bf16: bool):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = make_batch(batch_size)

    def one_step() -> float:
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out, target = forward(model, batch)
        loss = (out.float() - target).pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        return time.perf_counter() - start

    return one_step


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=6, help="timed steps of each, interleaved")
    p.add_argument("--output_json", default=None)
    args = p.parse_args(argv)
    torch.manual_seed(0)
    pixel = build_unet("mnist", resolution=28, channels=1)
    text_encoder = build_text_encoder("mini-sd", vocab_size=573)
    latent = TextConditionedUNet(build_conditional_unet("mini-sd", 8, 4, 128), text_encoder)

    def pixel_batch(n):
        return torch.randn(n, 1, 28, 28), torch.randint(0, 1000, (n,))

    def latent_batch(n):
        return torch.randn(n, 4, 8, 8), torch.randint(0, 1000, (n,)), torch.randint(0, 573, (n, 16))

    runs = {
        "pixel": (step_timer(pixel, pixel_batch, lambda m, b: (m(b[0], b[1]).sample, b[0]), 64, True), 64),
        "latent": (step_timer(latent, latent_batch, lambda m, b: (m(b[0], b[1], b[2]), b[0]), 256, False), 256),
    }
    for step, _ in runs.values():  # warm-up
        step()
    times = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, (step, _) in runs.items():
            times[name].append(step())
    result = {"threads": torch.get_num_threads(),
              "parameters": {"pixel_unet": count_parameters(pixel), "latent_unet": count_parameters(latent.unet),
                             "text_encoder": count_parameters(text_encoder)}}
    for name, (_, batch) in runs.items():
        median = sorted(times[name])[len(times[name]) // 2]
        result[f"{name}_images_per_s"] = round(batch / median, 1)
        result[f"{name}_hours_for_100_epochs"] = round(6_000_000 / (batch / median) / 3600, 1)
    result["latent_speedup"] = round(result["latent_images_per_s"] / result["pixel_images_per_s"], 2)
    print(json.dumps(result, indent=2))
    if args.output_json:
        with open(args.output_json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
