"""Sampling speed on this machine: images/s and model calls per image for each scheduler at its usual step count.

    python benchmarks/sample_speed.py                                      # all 16 samplers, 16 images each
    python benchmarks/sample_speed.py --schedulers ddim,dpm++ --num_images 8
    python benchmarks/sample_speed.py --model runs/mnist --schedulers ddpm  # a trained folder instead

The network is the ``mnist`` preset (``build_unet("mnist")``, 3.9M parameters, 28x28x1); random weights are as
fast as trained ones. The cost of sampling is (model calls per image) x (cost of one call): a scheduler's step is
negligible next to the U-Net, so images/s is inversely proportional to the calls, which the table shows next to the
speed. Second-order schedulers (Heun, KDPM2, DPM++ SDE) make two calls per step for 25 steps: 49 calls.
"""

from __future__ import annotations

import argparse
import time

import torch

from sd_course.core.errors import InputError
from sd_course.core.models import build_unet, count_parameters
from sd_course.core.schedulers import SCHEDULERS, default_num_inference_steps, make_scheduler
from sd_course.pixel.pipeline import UnconditionalImagePipeline, generate, load_pipeline


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--schedulers", default=",".join(info.alias for info in SCHEDULERS),
                   help="comma-separated aliases or class names (default: all 15)")
    p.add_argument("--num_images", type=int, default=16)
    p.add_argument("--batch_size", type=int, default=None, help="default: all images in one batch")
    p.add_argument("--num_inference_steps", type=int, default=None, help="default: each scheduler's usual count")
    p.add_argument("--model", default=None, help="a pipeline folder; default: a random mnist-preset U-Net")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return p.parse_args(argv)


def random_mnist_pipeline():
    from diffusers import DDPMScheduler

    torch.manual_seed(0)
    unet = build_unet("mnist")
    return UnconditionalImagePipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=1000))


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = load_pipeline(args.model) if args.model else random_mnist_pipeline()
    pipe.to(args.device)
    training_config = pipe.scheduler.config
    calls = []
    pipe.unet.register_forward_hook(lambda module, inputs, output: calls.append(inputs[0].shape[0]))
    print(f"model: {args.model or 'mnist preset, random weights'} ({count_parameters(pipe.unet) / 1e6:.1f}M "
          f"parameters), {args.num_images} images, batch {args.batch_size or args.num_images}, device {args.device}, "
          f"{torch.get_num_threads()} threads")
    print(f"{'scheduler':<34} {'steps':>5} {'calls/img':>9} {'seconds':>8} {'images/s':>9} {'ms/call':>8}")
    for name in [s.strip() for s in args.schedulers.split(",") if s.strip()]:
        try:
            pipe.scheduler = make_scheduler(name, training_config)
        except InputError as e:
            print(f"{name:<34} skipped: {e}")
            continue
        steps = args.num_inference_steps or default_num_inference_steps(pipe.scheduler)
        calls.clear()
        start = time.perf_counter()
        generate(pipe, args.num_images, batch_size=args.batch_size or args.num_images, num_inference_steps=steps,
                 seed=0, show_progress=False)
        seconds = time.perf_counter() - start
        calls_per_image = sum(calls) / args.num_images
        print(f"{type(pipe.scheduler).__name__:<34} {steps:>5} {calls_per_image:>9.0f} {seconds:>8.2f} "
              f"{args.num_images / seconds:>9.2f} {1000 * seconds / max(len(calls), 1):>8.1f}", flush=True)


if __name__ == "__main__":
    main()
