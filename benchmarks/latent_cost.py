"""Why Stable Diffusion diffuses in latent space: one training step on 4x8x8 latents vs on 1x28x28 pixels.

    python benchmarks/latent_cost.py --output_json benchmarks/results/latent_cost.json

Times, in one process and interleaved (A B A B ...) so that both see the same machine, a full optimisation step
(forward, backward, AdamW) of the two shipped denoisers, built from their configs (random weights: the cost of a
step does not depend on them) and trained as their recipes train them:
* pixel: `pipelines/ddpm-mnist/unet` (UNet2DModel, `mnist-small`) on 1x28x28 digits, batch 64
  (training/configs/mnist.yaml);
* latent: `pipelines/mini-sd-mnist/unet` (UNet2DConditionModel) + its `text_encoder` (CLIPTextModel) on 4x8x8
  latents with captions of the encoder's full context (77 tokens), batch 256 (training/configs/mini-sd-mnist.yaml;
  the VAE is frozen and its latents cached, so it costs nothing per step).
Both at the precision the recipes' ``--mixed_precision auto`` picks on this machine (bf16 where the CPU computes it
natively, else fp32), with the attention the training loop uses on a CPU (``use_bmm_attention``: plain matmuls in
the U-Nets' attention and the text encoder's). A third, interleaved with them: the latent step with the text encoder
left on transformers' fused attention (``sdpa``), the loop's choice before it knew the text encoder; its images/s
say what switching it paid. Prints images/s of each, the ratio, and what "100 epochs of MNIST" (6M images) costs
each here; ``--output_json`` writes them with their provenance.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import yaml
from diffusers import UNet2DConditionModel, UNet2DModel
from transformers import CLIPTextConfig, CLIPTextModel

from sd_course.core.models import count_parameters, use_bmm_attention
from sd_course.core.provenance import describe_device, write_result
from sd_course.latent.text_to_image import TextConditionedUNet
from sd_course.train.loop import resolve_mixed_precision

PIXEL_UNET, LATENT_UNET, TEXT_ENCODER = ("pipelines/ddpm-mnist/unet", "pipelines/mini-sd-mnist/unet",
                                         "pipelines/mini-sd-mnist/text_encoder")
PIXEL_RECIPE, LATENT_RECIPE = "training/configs/mnist.yaml", "training/configs/mini-sd-mnist.yaml"


def recipe_batch(recipe: str) -> int:
    return int(yaml.safe_load(Path(recipe).read_text())["train_batch_size"])


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
    precision = resolve_mixed_precision("auto", use_cpu=True)
    pixel = UNet2DModel.from_config(UNet2DModel.load_config(PIXEL_UNET))
    text_encoder = CLIPTextModel(CLIPTextConfig.from_pretrained(TEXT_ENCODER))
    latent = TextConditionedUNet(UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(LATENT_UNET)),
                                 text_encoder)
    fused_text = TextConditionedUNet(UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(LATENT_UNET)),
                                     CLIPTextModel(CLIPTextConfig.from_pretrained(TEXT_ENCODER)))
    for model in (pixel, latent):
        use_bmm_attention(model)
    use_bmm_attention(fused_text.unet)  # the U-Net as the loop trains it, the text encoder on transformers' sdpa
    size, channels = latent.unet.config.sample_size, latent.unet.config.in_channels
    tokens, vocab = text_encoder.config.max_position_embeddings, text_encoder.config.vocab_size

    def pixel_batch(n):
        return torch.randn(n, 1, 28, 28), torch.randint(0, 1000, (n,))

    def latent_batch(n):
        return torch.randn(n, channels, size, size), torch.randint(0, 1000, (n,)), torch.randint(0, vocab, (n, tokens))

    bf16 = precision == "bf16"
    pixel_bs, latent_bs = recipe_batch(PIXEL_RECIPE), recipe_batch(LATENT_RECIPE)
    runs = {
        "pixel": (step_timer(pixel, pixel_batch, lambda m, b: (m(b[0], b[1]).sample, b[0]), pixel_bs, bf16), pixel_bs),
        "latent": (step_timer(latent, latent_batch, lambda m, b: (m(b[0], b[1], b[2]), b[0]), latent_bs, bf16),
                   latent_bs),
        "latent_fused_text_attention": (step_timer(fused_text, latent_batch,
                                                   lambda m, b: (m(b[0], b[1], b[2]), b[0]), latent_bs, bf16),
                                        latent_bs),
    }
    for step, _ in runs.values():  # warm-up
        step()
    times = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, (step, _) in runs.items():
            times[name].append(step())
    result = {"machine": describe_device(), "precision": precision, "caption_tokens": tokens,
              "batch": {"pixel": pixel_bs, "latent": latent_bs},
              "parameters": {"pixel_unet": count_parameters(pixel), "latent_unet": count_parameters(latent.unet),
                             "text_encoder": count_parameters(text_encoder)}}
    for name, (_, batch) in runs.items():
        median = sorted(times[name])[len(times[name]) // 2]
        result[f"{name}_images_per_s"] = round(batch / median, 1)
        result[f"{name}_hours_for_100_epochs"] = round(6_000_000 / (batch / median) / 3600, 1)
    result["latent_speedup"] = round(result["latent_images_per_s"] / result["pixel_images_per_s"], 2)
    result["text_attention_speedup"] = round(result["latent_images_per_s"]
                                             / result["latent_fused_text_attention_images_per_s"], 2)
    print(json.dumps(result, indent=2))
    if args.output_json:
        write_result(args.output_json, result, inputs=[f"{PIXEL_UNET}/config.json", f"{LATENT_UNET}/config.json",
                                                       f"{TEXT_ENCODER}/config.json", PIXEL_RECIPE, LATENT_RECIPE])


if __name__ == "__main__":
    main()
