"""Training speed on this machine: our loop against a baseline that mirrors diffusers' example, in one run.

    python benchmarks/train_throughput.py --preset mnist-small              # 3 interleaved rounds, fp32 and bf16
    python benchmarks/train_throughput.py --preset mnist-small --rounds 5 --output_json throughput.json
    python benchmarks/train_throughput.py --skip_baseline --precisions bf16 --variants plain,channels_last,compile

* **ours**: ``sd_course.train.loop.train`` itself (images decoded once into a uint8 tensor, accelerate, EMA,
  logging), with snapshots and sample grids off, on the 2,000 MNIST digits shipped with the package.
* **baseline**: the inner loop of diffusers' ``examples/unconditional_image_generation/train_unconditional.py``:
  a ``datasets`` transform that turns every PIL image into a tensor at every step, an EMA update every step, the
  same U-Net, optimiser and batch size, at the same precision (bf16 through ``torch.autocast``, as accelerate does).

The variants are timed in interleaved rounds (ours fp32, ours bf16, baseline fp32, baseline bf16, then again), so
that a busy minute of a shared machine hits all of them alike; each prints its median images/s and the spread
(min-max) over the rounds, the fraction of this machine's measured GEMM rate at that precision that the step
reaches (a training step's FLOPs per image from torch's FLOP counter), and ``speedup_vs_baseline`` at each
precision. The first lines name the machine: CPU model, native bf16 or not (AMX / AVX512-BF16), threads.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from sd_course.core.data import BUILTIN_DATASETS
from sd_course.core.models import build_unet, count_parameters
from sd_course.core.provenance import write_result
from sd_course.pixel.diffusion import DiffusionConfig as TrainConfig
from sd_course.pixel.diffusion import PixelDiffusion
from sd_course.train.loop import train


def measure_ours(precision: str, steps: int, batch_size: int, preset: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(
            model_config_name_or_path=preset, mixed_precision=precision, max_train_steps=steps,
            train_batch_size=batch_size, use_ema=True, save_images_epochs=0, save_model_epochs=0,
            checkpointing_steps=0, logger="none", output_dir=str(Path(tmp) / "run"),
        )
        train(cfg, PixelDiffusion(cfg))
        return json.loads((Path(tmp) / "run" / "train_summary.json").read_text())


def measure_baseline(steps: int, batch_size: int, preset: str, resolution: int = 28, precision: str = "no") -> float:
    """diffusers' example loop: PIL -> tensor per sample per step, EMA every step; bf16 by autocast if asked."""
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
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                prediction = model(noise_scheduler.add_noise(x0, noise, t), t).sample
            loss = F.mse_loss(prediction.float(), noise)
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


def gemm_rate(dtype: torch.dtype, n: int = 1024, seconds: float = 1.0) -> float:
    """This machine's matrix-multiply rate (GFLOP/s) at ``dtype``, with torch's threads: what a step could reach."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    for _ in range(3):
        a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return 2 * n ** 3 * count / (time.perf_counter() - start) / 1e9


def step_flops_per_image(preset: str, resolution: int = 28) -> float:
    """FLOPs of one training step (forward + backward) per image, from torch's FLOP counter."""
    model = build_unet(preset, resolution, 1)
    x = torch.randn(8, 1, resolution, resolution)
    t = torch.randint(0, 1000, (8,))
    with FlopCounterMode(display=False) as counter:
        model(x, t).sample.float().pow(2).mean().backward()
    return counter.get_total_flops() / 8


def describe_cpu() -> str:
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    kind = "AMX" if "amx_bf16" in flags else "AVX512-BF16" if "avx512_bf16" in flags else "no native bf16"
    return f"{name}, {kind}, {torch.get_num_threads()} threads"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="optimisation steps per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is reported")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--preset", default="mnist-small")
    parser.add_argument("--precisions", default="no,bf16", help="comma-separated: no (fp32), bf16")
    parser.add_argument("--skip_baseline", action="store_true")
    parser.add_argument("--variants", default="",
                        help="also time a bare bf16 step with one change: plain,channels_last,compile,fp32,threads1")
    parser.add_argument("--output_json", default=None)
    args = parser.parse_args()
    precisions = args.precisions.split(",")
    print(f"machine: {describe_cpu()}; torch {torch.__version__}")
    print(f"preset {args.preset} ({count_parameters(build_unet(args.preset)) / 1e6:.2f}M params), batch "
          f"{args.batch_size}, {args.steps} steps x {args.rounds} interleaved rounds")
    flops = step_flops_per_image(args.preset)
    rates = {p: gemm_rate(torch.bfloat16 if p == "bf16" else torch.float32) for p in precisions}
    print(f"step: {flops / 1e9:.2f} GFLOP per image; GEMM " + ", ".join(
        f"{'fp32' if p == 'no' else p} {r:.0f} GFLOP/s" for p, r in rates.items()))
    measure_baseline(3, args.batch_size, args.preset)  # warm-up: the first steps of a process build oneDNN kernels
    runs = {}
    for _ in range(args.rounds):
        for precision in precisions:
            runs.setdefault(("ours", precision), []).append(
                measure_ours(precision, args.steps, args.batch_size, args.preset)["images_per_s"])
            if not args.skip_baseline:
                runs.setdefault(("baseline", precision), []).append(
                    measure_baseline(args.steps, args.batch_size, args.preset, precision=precision))
    rows = {}
    for (loop, precision), values in runs.items():
        median = statistics.median(values)
        rows[f"{loop} {'fp32' if precision == 'no' else precision}"] = dict(
            images_per_s=round(median, 1), spread=[round(min(values), 1), round(max(values), 1)],
            fraction_of_gemm_rate=round(median * flops / 1e9 / rates[precision], 3))
    for name, row in rows.items():
        print(f"{name:>14}: {row['images_per_s']:8.1f} images/s (min-max {row['spread'][0]}-{row['spread'][1]}), "
              f"{100 * row['fraction_of_gemm_rate']:.0f}% of the GEMM rate")
    speedups = {}
    for precision in precisions:
        name = "fp32" if precision == "no" else precision
        if f"baseline {name}" in rows:
            speedups[name] = round(rows[f"ours {name}"]["images_per_s"] / rows[f"baseline {name}"]["images_per_s"], 2)
            print(f"speedup_vs_baseline ({name}): {speedups[name]:.2f}")
    if "ours fp32" in rows and "ours bf16" in rows:
        print(f"bf16_vs_fp32 (ours): {rows['ours bf16']['images_per_s'] / rows['ours fp32']['images_per_s']:.2f}")
    variants = {}
    for variant in filter(None, args.variants.split(",")):
        variants[variant] = round(measure_variant(variant, args.steps, args.batch_size, args.preset), 1)
        print(f"bare step {variant:>13}: {variants[variant]:8.1f} images/s", flush=True)
    if args.output_json:
        write_result(args.output_json, dict(
            machine=describe_cpu(), torch=torch.__version__, preset=args.preset, batch_size=args.batch_size,
            steps=args.steps, rounds=args.rounds, gflop_per_image=round(flops / 1e9, 3),
            gemm_gflops={("fp32" if p == "no" else p): round(r, 1) for p, r in rates.items()}, rows=rows,
            speedup_vs_baseline=speedups, bare_step_variants=variants),
            inputs=[], tolerance=0.15)  # a fresh U-Net of the preset: no shipped file is measured


if __name__ == "__main__":
    main()
