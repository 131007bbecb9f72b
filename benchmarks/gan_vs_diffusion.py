"""How do diffusion models compare to GANs? The same digits, the same CPU-minutes, several seeds each.

    python benchmarks/gan_vs_diffusion.py --dataset_name ../shared/data/mnist                     # ~20 min
    python benchmarks/gan_vs_diffusion.py --dataset_name ../shared/data/mnist --minutes 1 --gan_seeds 0 --diffusion_seeds 0

Two models of about a million parameters, trained by the same loop (sd_course/train/loop.py) on all 60,000 MNIST
training digits for the same minutes of training on this machine:

* the DCGAN of sd_course/gan/dcgan.py (generator 0.90M + discriminator 0.14M parameters; DCGAN's Adam settings;
  bf16, as the U-Net);
* a diffusion U-Net, ``mnist-narrow`` (0.99M parameters), with the best recipe of benchmarks/recipe_sweep.py at
  the time of writing (``cosine-v``: squaredcos_cap_v2 schedule, v-prediction, lr 1e-3, bf16, EMA).

The budget is turned into a step count per model from a short timed calibration run (so every run is an exact,
reproducible number of steps). Each finished model draws ``--num_samples`` images from the same seed (the GAN in one
network call each, the U-Net with DPM-Solver++ in ``--steps`` calls) and is scored with the shipped classifier's
features against the test split: FID, KID, precision, recall, classes covered. Seed-to-seed spread measures how
stable training is; sampling images/s is timed on the same images.

Prints one table (every run, then mean and spread per model) and writes ``--output_dir``/gan_vs_diffusion.json and
gan_vs_diffusion.png (samples of every run side by side). Results: benchmarks/README.md section 10.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import recipe_sweep
import torch

from sd_course.core.models import count_parameters
from sd_course.core.provenance import write_result
from sd_course.evaluate.classifier import DEFAULT_CLASSIFIER_DIR
from sd_course.evaluate.metrics import FEATURE_NAME, load_feature_extractor, prepare_reference, score_images
from sd_course.gan.dcgan import GAN, GANConfig, generate, load_generator
from sd_course.pixel.diffusion import DiffusionConfig, PixelDiffusion
from sd_course.pixel.pipeline import generate as sample_pipeline
from sd_course.pixel.pipeline import load_pipeline
from sd_course.train.loop import train

METRICS = {name: f"{name}_{FEATURE_NAME}" for name in ("fid", "precision", "recall", "classes_covered")}
METRICS["kid"] = f"kid_{FEATURE_NAME}_mean"
QUIET = dict(save_images_epochs=0, save_model_epochs=0, checkpointing_steps=0, logger="none", overwrite_output_dir=True)


def config(kind: str, args, seed: int, output_dir: Path, steps: int):
    common = dict(dataset_name=args.dataset_name, seed=seed, output_dir=str(output_dir), max_train_steps=steps,
                  max_train_samples=args.max_train_samples, **QUIET)
    if kind == "gan":  # the same precision as the diffusion recipe: the same CPU-minutes buy the same arithmetic
        return GANConfig(**common, mixed_precision=recipe_sweep.COSINE_V["mixed_precision"])
    return DiffusionConfig(**{**recipe_sweep.COSINE_V, "lr_warmup_steps": min(100, steps // 10)}, use_ema=True,
                           model_config_name_or_path="mnist-narrow", **common)


def run(kind: str, cfg) -> Path:
    return train(cfg, GAN(cfg) if kind == "gan" else PixelDiffusion(cfg))


def seconds_per_step(kind: str, args, workdir: Path, steps: int = 30) -> float:
    """Time a short run; the first 10 steps (kernel warm-up) are left out."""
    out = run(kind, config(kind, args, 0, workdir / f"calibrate-{kind}", steps))
    clock = [json.loads(line)["train_seconds"] for line in (out / "logs" / "loss.jsonl").read_text().splitlines()]
    return (clock[-1] - clock[9]) / (len(clock) - 10)


def sample(kind: str, folder: Path, args) -> tuple[torch.Tensor, float, int]:
    """(uint8 images, images/s, parameters of the sampling network)."""
    if kind == "gan":
        model = load_generator(folder)
        start = time.time()
        images = generate(model, args.num_samples, seed=0)
    else:
        model = load_pipeline(str(folder), "dpm++")
        model.set_progress_bar_config(disable=True)
        start = time.time()
        images = sample_pipeline(model, args.num_samples, batch_size=250, num_inference_steps=args.steps, seed=0,
                                 show_progress=False)
        model = model.unet
    return images, args.num_samples / (time.time() - start), count_parameters(model)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset_name", default="ylecun/mnist", help="Hub id or local folder with train and test splits")
    p.add_argument("--minutes", type=float, default=3.0, help="training minutes of every run (this machine)")
    p.add_argument("--gan_seeds", default="0,1,2")
    p.add_argument("--diffusion_seeds", default="0,1")
    p.add_argument("--max_train_samples", type=int, default=None, help="default: all 60,000 digits")
    p.add_argument("--num_samples", type=int, default=1000, help="samples per score")
    p.add_argument("--steps", type=int, default=25, help="DPM-Solver++ steps of the diffusion model")
    p.add_argument("--output_dir", default="runs/gan_vs_diffusion")
    p.add_argument("--output_json", default=None,
                   help="where the result goes, with provenance (default: --output_dir/gan_vs_diffusion.json)")
    args = p.parse_args(argv)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    extractor = load_feature_extractor(None)
    reference = prepare_reference(f"{args.dataset_name}:test", extractor, None, show_progress=False)

    rows, pictures = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind, seeds in (("gan", args.gan_seeds), ("diffusion", args.diffusion_seeds)):
            per_step = seconds_per_step(kind, args, Path(tmp))
            steps = max(1, round(args.minutes * 60 / per_step))
            print(f"{kind}: {per_step * 1000:.0f} ms/step -> {steps} steps for {args.minutes:g} min", flush=True)
            for seed in [int(s) for s in seeds.split(",")]:
                folder = run(kind, config(kind, args, seed, out / f"{kind}-seed{seed}", steps))
                summary = json.loads((folder / "train_summary.json").read_text())
                images, speed, params = sample(kind, folder, args)
                scores = score_images(images, reference, extractor, 0)
                rows.append({"model": kind, "seed": seed, "steps": steps, "parameters_sampler": params,
                             "parameters_trained": summary["num_parameters"],
                             "train_minutes": summary["train_seconds"] / 60,
                             "images_seen": steps * 64, "sampling_images_per_s": speed,
                             "network_calls_per_image": 1 if kind == "gan" else args.steps,
                             **{name: scores[key] for name, key in METRICS.items()},
                             "class_histogram": scores[f"class_histogram_{FEATURE_NAME}"]})
                pictures[f"{kind} seed {seed}"] = images[:16]
                print(json.dumps({k: v for k, v in rows[-1].items() if k != "class_histogram"}), flush=True)

    print(f"\n{args.minutes:g} training minutes per run; {args.num_samples} samples per score (seed 0)\n")
    print("| model | seed | training steps (batch 64) | train minutes | FID | KID | precision | recall | "
          "classes covered | sampling images/s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['seed']} | {r['steps']:,} | {r['train_minutes']:.1f} | {r['fid']:.1f} | "
              f"{r['kid']:.3f} | {r['precision']:.2f} | {r['recall']:.2f} | {r['classes_covered']:.0f} | "
              f"{r['sampling_images_per_s']:,.0f} |")
    spread = {}
    for kind in ("gan", "diffusion"):
        fids = [r["fid"] for r in rows if r["model"] == kind]
        if fids:
            spread[kind] = {"fid_mean": statistics.mean(fids),
                            "fid_std": statistics.stdev(fids) if len(fids) > 1 else 0.0,
                            "fid_min": min(fids), "fid_max": max(fids)}
            print(f"| **{kind}: mean ± sd over {len(fids)} seeds** | | | | **{spread[kind]['fid_mean']:.1f} ± "
                  f"{spread[kind]['fid_std']:.1f}** | | | | | |")
    plot(pictures, out / "gan_vs_diffusion.png")
    output_json = Path(args.output_json) if args.output_json else out / "gan_vs_diffusion.json"
    write_result(output_json, {"args": vars(args), "rows": rows, "spread": spread,
                               "minutes": (time.time() - start) / 60},
                 inputs=[DEFAULT_CLASSIFIER_DIR / "model.safetensors"])
    print(f"\nwrote {output_json} and {out}/gan_vs_diffusion.png ({(time.time() - start) / 60:.1f} min)")


def plot(pictures: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    from sd_course.core.images import image_grid

    fig = Figure(figsize=(2.4 * len(pictures), 2.8))
    axes = fig.subplots(1, len(pictures), squeeze=False)[0]
    for ax, (title, images) in zip(axes, pictures.items()):
        ax.imshow(image_grid(images, cols=4, min_cell=28))
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
