"""Sampling speed on this machine: images/s and model calls per image for each scheduler at its usual step count.

    python benchmarks/sample_speed.py --output_json benchmarks/results/sample_speed_cpu.json  # the shipped model
    python benchmarks/sample_speed.py --schedulers ddim,dpm++ --num_images 8
    python benchmarks/sample_speed.py --model runs/mnist --schedulers ddpm  # a trained folder of yours
    python benchmarks/sample_speed.py --model random:mnist                  # a random U-Net of a preset

The network is the shipped ``pipelines/ddpm-mnist`` (the ``mnist-small`` preset, 2.7M parameters, 28x28x1) unless
``--model`` names another; random weights are as fast as trained ones. The cost of sampling is (model calls per
image) x (cost of one call): a scheduler's step is
negligible next to the U-Net, so images/s is inversely proportional to the calls, which the table shows next to the
speed. Second-order schedulers (Heun, KDPM2, DPM++ SDE) make two calls per step for 25 steps: 49 calls.
"""

from __future__ import annotations

import argparse
import time

import torch
from diffusers import DDPMScheduler

from sd_course.core.device import device_argument, resolve_device
from sd_course.core.errors import InputError
from sd_course.core.models import build_unet, count_parameters
from sd_course.core.provenance import relative_to_root, write_result
from sd_course.core.schedulers import SCHEDULERS, default_num_inference_steps, make_scheduler
from sd_course.pixel.pipeline import UnconditionalImagePipeline, default_model_path, generate, load_pipeline


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--schedulers", default=",".join(info.alias for info in SCHEDULERS),
                   help="comma-separated aliases or class names (default: all 15)")
    p.add_argument("--num_images", type=int, default=16)
    p.add_argument("--batch_size", type=int, default=None, help="default: all images in one batch")
    p.add_argument("--num_inference_steps", type=int, default=None, help="default: each scheduler's usual count")
    p.add_argument("--model", default=None,
                   help="a pipeline folder (default: the shipped pipelines/ddpm-mnist) or random:PRESET, a U-Net of "
                        "that preset with random weights (sd_course/core/models.py)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", type=device_argument)
    p.add_argument("--output_json", default=None, help="write every row there, with provenance")
    return p.parse_args(argv)


def random_pipeline(preset: str) -> UnconditionalImagePipeline:
    """A U-Net of ``preset`` with random weights (seed 0) and the default DDPM schedule: as fast as a trained one."""
    torch.manual_seed(0)
    unet = build_unet(preset)
    return UnconditionalImagePipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=1000))


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = args.model or str(default_model_path())
    pipe = random_pipeline(model.split(":", 1)[1]) if model.startswith("random:") else load_pipeline(model)
    device = resolve_device(args.device)
    pipe.to(device)
    training_config = pipe.scheduler.config
    calls = []
    pipe.unet.register_forward_hook(lambda module, inputs, output: calls.append(inputs[0].shape[0]))
    print(f"model: {model} ({count_parameters(pipe.unet) / 1e6:.1f}M "
          f"parameters), {args.num_images} images, batch {args.batch_size or args.num_images}, device {device}, "
          f"{torch.get_num_threads()} threads")
    print(f"{'scheduler':<34} {'steps':>5} {'calls/img':>9} {'seconds':>8} {'images/s':>9} {'ms/call':>8}")
    rows = []
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
        rows.append(dict(scheduler=name, class_name=type(pipe.scheduler).__name__, steps=steps,
                         calls_per_image=calls_per_image, seconds=seconds, images_per_s=args.num_images / seconds,
                         ms_per_call=1000 * seconds / max(len(calls), 1)))
        print(f"{type(pipe.scheduler).__name__:<34} {steps:>5} {calls_per_image:>9.0f} {seconds:>8.2f} "
              f"{args.num_images / seconds:>9.2f} {rows[-1]['ms_per_call']:>8.1f}", flush=True)
    if args.output_json:
        inputs = [] if model.startswith("random:") else [model]
        record = dict(model=relative_to_root(model) if inputs else model, num_images=args.num_images,
                      batch_size=args.batch_size or args.num_images, rows=rows)
        write_result(args.output_json, record, inputs=inputs, device=device)
        print(f"wrote {args.output_json}")


if __name__ == "__main__":
    main()
