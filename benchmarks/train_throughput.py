"""Training speed on this machine: our loop against a baseline that mirrors diffusers' example, in one run.

    python benchmarks/train_throughput.py                         # mnist preset, fp32 and bf16, 40 steps of 64
    python benchmarks/train_throughput.py --steps 100 --precisions bf16 --skip_baseline
    python benchmarks/train_throughput.py --skip_baseline --precisions bf16 --variants plain,channels_last,compile,threads1

* **ours**: ``sd_course.train.loop.train`` itself (images decoded once into a uint8 tensor, accelerate, EMA,
  logging), with snapshots and sample grids off, on the 2,000 MNIST digits shipped with the package.
* **baseline**: the inner loop of diffusers' ``examples/unconditional_image_generation/train_unconditional.py``:
  a ``datasets`` transform that turns every PIL image into a tensor at every step, fp32, an EMA update every step,
  the same U-Net, optimiser and batch size.

Prints images/s for each (after 3 warm-up steps of the process, so that whichever runs first is not
penalised for building the CPU kernels) and
``speedup_vs_baseline: X.XX`` for the fastest of our precisions.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sd_course.core.data import BUILTIN_DATASETS
from sd_course.core.models import build_unet, count_parameters
from sd_course.pixel.diffusion import DiffusionConfig as TrainConfig
from sd_course.train.loop import train


def measure_ours(precision: str, steps: int, batch_size: int, preset: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(
            model_config_name_or_path=preset, mixed_precision=precision, max_train_steps=steps,
            train_batch_size=batch_size, use_ema=True, save_images_epochs=0, save_model_epochs=0,
            checkpointing_steps=0, logger="none", output_dir=str(Path(tmp) / "run"),
        )
        train(cfg)
        return json.loads((Path(tmp) / "run" / "train_summary.json").read_text())


def measure_baseline(steps: int, batch_size: int, preset: str, resolution: int = 28) -> float:
    """diffusers' example loop: PIL -> tensor per sample per step, fp32, EMA every step."""
    import datasets
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel
    from PIL import Image

    ds = datasets.load_dataset(str(BUILTIN_DATASETS["builtin:mnist-2k"]), split="train")

    def transform(examples):  # Resize, CenterCrop, ToTensor, Normalize([0.5], [0.5]) without torchvision
        out = []
        for image in examples["image"]:
            image = image.convert("L").resize((resolution, resolution), Image.BILINEAR)
            out.append(torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)[None] * 2 - 1)
        return {"input": out}

    ds.set_transform(transform)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True)
    torch.manual_seed(0)
    model = build_unet(preset, resolution, 1)
    ema = EMAModel(model.parameters(), decay=0.9999, use_ema_warmup=True, inv_gamma=1.0, power=0.75)
    noise_scheduler = DDPMScheduler(num_train_timesteps=1000)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.95, 0.999), weight_decay=1e-6)
    lr_scheduler = get_scheduler("cosine", optimizer=optimizer, num_warmup_steps=100, num_training_steps=steps)
    done, images, start = 0, 0, time.time()
    while done < steps:
        for batch in loader:
            x0 = batch["input"]
            noise = torch.randn(x0.shape)
            t = torch.randint(0, 1000, (x0.shape[0],)).long()
            loss = F.mse_loss(model(noise_scheduler.add_noise(x0, noise, t), t).sample, noise)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            lr_scheduler.step()
            optimizer.zero_grad()
            ema.step(model.parameters())
            images += x0.shape[0]
            done += 1
            if done == steps:
                break
    return images / (time.time() - start)


def measure_variant(variant: str, steps: int, batch_size: int, preset: str, resolution: int = 28) -> float:
    """One bare training step (data already a tensor, bf16 autocast, AdamW) with one option changed, to see what
    helps on this CPU: ``plain``, ``channels_last`` (NHWC memory layout), ``compile`` (torch.compile, inductor),
    ``fp32`` (no autocast) or ``threads1`` (torch limited to one thread, as a bare ``accelerate launch`` does)."""
    from diffusers import DDPMScheduler

    threads = torch.get_num_threads()
    torch.manual_seed(0)
    model = build_unet(preset, resolution, 1)
    x0 = torch.rand(batch_size, 1, resolution, resolution) * 2 - 1
    if variant == "channels_last":
        model = model.to(memory_format=torch.channels_last)
        x0 = x0.contiguous(memory_format=torch.channels_last)
    forward = torch.compile(model) if variant == "compile" else model
    if variant == "threads1":
        torch.set_num_threads(1)
    noise_scheduler = DDPMScheduler(num_train_timesteps=1000)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        noise = torch.randn_like(x0)
        t = torch.randint(0, 1000, (batch_size,))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=variant != "fp32"):
            prediction = forward(noise_scheduler.add_noise(x0, noise, t), t).sample
        loss = F.mse_loss(prediction.float(), noise)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    try:
        for _ in range(3):  # warm-up (and, for compile, the compilation itself)
            step()
        start = time.time()
        for _ in range(steps):
            step()
        return steps * batch_size / (time.time() - start)
    finally:
        torch.set_num_threads(threads)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--preset", default="mnist")
    parser.add_argument("--precisions", default="no,bf16", help="comma-separated: no (fp32), bf16")
    parser.add_argument("--skip_baseline", action="store_true")
    parser.add_argument("--variants", default="",
                        help="also time a bare bf16 step with one change: plain,channels_last,compile,fp32,threads1")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, preset {args.preset} "
          f"({count_parameters(build_unet(args.preset)) / 1e6:.2f}M params), batch {args.batch_size}, {args.steps} steps")
    measure_baseline(3, args.batch_size, args.preset)  # warm-up: the first steps of a process build oneDNN kernels
    ours = {}
    for precision in args.precisions.split(","):
        ours[precision] = measure_ours(precision, args.steps, args.batch_size, args.preset)["images_per_s"]
        print(f"ours {'fp32' if precision == 'no' else precision:>5}: {ours[precision]:8.1f} images/s")
    if "no" in ours and "bf16" in ours:
        print(f"bf16_vs_fp32: {ours['bf16'] / ours['no']:.2f}")
    if not args.skip_baseline:
        baseline = measure_baseline(args.steps, args.batch_size, args.preset)
        print(f"baseline fp32: {baseline:8.1f} images/s  (diffusers example loop)")
        print(f"speedup_vs_baseline: {max(ours.values()) / baseline:.2f}")
    for variant in filter(None, args.variants.split(",")):
        print(f"bare step {variant:>13}: {measure_variant(variant, args.steps, args.batch_size, args.preset):8.1f} images/s",
              flush=True)


if __name__ == "__main__":
    main()
