"""Which sampler, how many steps? All 15 schedulers (and DPM++ 2M SDE, a setting of one) at their usual step counts
on one model: FID, precision, recall, class balance and images/s, from the same starting noises.

    python benchmarks/scheduler_table.py --reference ../shared/data/mnist:test --num_samples 200 --batch_size 200
        # the shipped model, all 16 (README section 12): 37 min on 2 CPU cores, of which DDPM's 1000 steps are 19
    python benchmarks/scheduler_table.py --model runs/mnist --schedulers ddim,dpm++,unipc --num_samples 200
    python benchmarks/scheduler_table.py --schedulers dpm++,unipc,ddim,euler,euler-a --timestep_spacing leading,trailing \
        --reference ../shared/data/mnist:test --num_samples 200 --batch_size 200    # where the steps go (section 12)
    python benchmarks/scheduler_table.py --schedulers dpm++ --settings '{}' '{"solver_order": 3}' \
        '{"thresholding": true}' '{"use_lu_lambdas": true}' '{"algorithm_type": "sde-dpmsolver++"}' \
        --reference ../shared/data/mnist:test --num_samples 1000     # which DPM-Solver++ settings matter (section 12)

Every scheduler gets the model's own noise schedule and prediction type (``sd_course.core.schedulers.make_scheduler``)
and its usual step count (``default_num_inference_steps``: 1000 for DDPM, 50 for DDIM and the Euler family, 25
for the multistep solvers). Second-order schedulers (Heun, KDPM2, DPM++ SDE) call the network twice per step, so the
table counts *model calls*, which is what sampling costs: images/s is measured on this machine, one scheduler at a
time, and is about (network speed) / (model calls). Results: benchmarks/README.md section 12.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from sd_course.core.device import device_argument, resolve_device
from sd_course.core.provenance import write_result
from sd_course.core.schedulers import SCHEDULERS, check_scheduler_settings, default_num_inference_steps
from sd_course.evaluate.classifier import DEFAULT_CLASSIFIER_DIR
from sd_course.evaluate.metrics import FEATURE_NAME, load_feature_extractor, prepare_reference, score_images
from sd_course.pixel.pipeline import default_model_path, generate, load_pipeline
from sd_course.publish.cards import scheduler_table_lines


def count_calls(unet) -> list[int]:
    """A forward hook on the U-Net: the returned one-element list counts its calls."""
    calls = [0]
    unet.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def measure(model: str | None, alias: str, num_samples: int, batch_size: int, reference, extractor,
            timestep_spacing: str | None = None, settings: dict | None = None, device: str = "cpu") -> dict:
    """Sample ``num_samples`` images (seed 0) with one scheduler at its usual step count and score them.
    ``timestep_spacing``: where its steps go among the T training timesteps (default: as the model's config says);
    ``settings``: other options of the scheduler's class, e.g. ``{"solver_order": 3}`` (the row is named after them).
    ``device``: where it samples (images/s are that device's)."""
    pipe = load_pipeline(model, alias, timestep_spacing, device)
    if settings:
        pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, **settings)
        alias = f"{alias} " + " ".join(f"{key}={value}" for key, value in settings.items())
    steps = default_num_inference_steps(pipe.scheduler)
    calls = count_calls(pipe.unet)
    if pipe.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.time()
    images = generate(pipe, num_samples, batch_size=batch_size, num_inference_steps=steps, seed=0,
                      show_progress=False)
    seconds = time.time() - start
    scores = score_images(images, reference, extractor, 0)
    batches = -(-num_samples // batch_size)
    histogram = scores[f"class_histogram_{FEATURE_NAME}"]
    return {"scheduler": alias, "class": type(pipe.scheduler).__name__, "steps": steps,
            "timestep_spacing": pipe.scheduler.config.get("timestep_spacing"),
            "model_calls": calls[0] // batches, "fid": scores[f"fid_{FEATURE_NAME}"],
            "precision": scores[f"precision_{FEATURE_NAME}"], "recall": scores[f"recall_{FEATURE_NAME}"],
            "class_min": min(histogram), "class_max": max(histogram), "images_per_s": num_samples / seconds,
            "device": pipe.device.type}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="a pipeline folder (default: the shipped pipelines/ddpm-mnist)")
    p.add_argument("--reference", default="ylecun/mnist:test")
    p.add_argument("--schedulers", default=",".join(info.alias for info in SCHEDULERS),
                   help="comma-separated aliases (default: all 16)")
    p.add_argument("--num_samples", type=int, default=500, help="samples per scheduler, seed 0")
    p.add_argument("--batch_size", type=int, default=250)
    p.add_argument("--timestep_spacing", default=None,
                   help="comma-separated, e.g. leading,trailing: measure each scheduler with each spacing "
                        "(default: the model's own)")
    p.add_argument("--settings", nargs="+", type=json.loads, default=[{}], metavar="JSON",
                   help="scheduler options to measure each scheduler with, one JSON object per variant, e.g. "
                        "'{}' '{\"solver_order\": 3}' '{\"thresholding\": true}' (default: '{}', the class's own)")
    p.add_argument("--device", default="cpu", type=device_argument, help="where to sample: cpu (the images/s of the docs), cuda or auto; "
                                                   "the quality columns agree across devices up to seed noise")
    p.add_argument("--output_json", default="runs/scheduler_table.json")
    args = p.parse_args(argv)
    for alias in args.schedulers.split(","):  # a misspelt option would be ignored by from_config: fail first
        for settings in args.settings:
            check_scheduler_settings(alias.strip(), settings)
    extractor = load_feature_extractor(None)
    reference = prepare_reference(args.reference, extractor, None, show_progress=False)
    spacings = args.timestep_spacing.split(",") if args.timestep_spacing else [None]
    rows = []
    for alias in args.schedulers.split(","):
        for spacing in spacings:
            for settings in args.settings:
                rows.append(measure(args.model, alias.strip(), args.num_samples, args.batch_size, reference,
                                    extractor, spacing, settings, args.device))
                print(json.dumps(rows[-1]), flush=True)

    print(f"\n{args.num_samples} samples per scheduler, seed 0, model {args.model or 'pipelines/ddpm-mnist'}, "
          f"against {args.reference}; classifier features\n")
    print("\n".join(scheduler_table_lines(rows, spacing_column=True)))
    write_result(args.output_json, {"args": vars(args), "rows": rows},
                 inputs=[args.model or default_model_path(), DEFAULT_CLASSIFIER_DIR / "model.safetensors"],
                 device=resolve_device(args.device))
    print(f"wrote {args.output_json}")


if __name__ == "__main__":
    main()
