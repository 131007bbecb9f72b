"""Quality per CPU-minute: train a few recipes on the same MNIST images and score each against minutes of training.

    python benchmarks/recipe_sweep.py --dataset_name ../shared/data/mnist            # the sweep of benchmarks/README.md
    python benchmarks/recipe_sweep.py --recipes fast,cosine --max_train_samples 4000 --epochs 1   # a quick look

Every recipe trains a U-Net with ``sd_course.train.loop.train`` on the first ``--max_train_samples`` training images
for ``--epochs`` epochs, and is scored after every epoch with the metrics of ``sd_course.evaluate.metrics`` (FID/KID,
precision/recall and class coverage on the shipped MNIST classifier's features, ``--eval_samples`` samples drawn
with DPM-Solver++ in ``--eval_steps`` steps, always from the same seeds) against the test split. The clock is the
training loop's own (``train_seconds`` in the logs: optimisation steps only, not sampling or scoring), on this
machine, with whatever threads torch uses.

The recipes (``RECIPES`` below) change one thing at a time:

* ``baseline``: the defaults of diffusers' ``examples/unconditional_image_generation/train_unconditional.py``
  (batch 16, lr 1e-4 with 500 warm-up steps, fp32, EMA up to 0.9999), run by our loop.
* ``fast``: the 5-epoch model first shipped: batch 64, lr 1e-3 with 100 warm-up steps, bf16, EMA up to 0.999,
  the ``linear`` beta schedule of Ho et al. 2020.
* ``cosine``: ``fast`` with the ``squaredcos_cap_v2`` schedule (Nichol & Dhariwal 2021).
* ``cosine-small`` / ``cosine-narrow``: the ``mnist-small`` / ``mnist-narrow`` U-Nets of ``sd_course/core/models.py``.
* ``cosine-v``: v-prediction (Salimans & Ho 2022), and from it, one change each: ``cosine-v-small`` (the
  ``mnist-small`` U-Net), ``cosine-v-snr5`` (min-SNR-5 loss weights, Hang et al. 2023), ``cosine-v-b128`` (batch
  128, lr scaled by sqrt(2)), ``cosine-v-ema9999`` (EMA up to 0.9999).
* ``scaled_linear`` and ``sigmoid``: the other two beta schedules (with ``fast`` and ``cosine``: the noise-schedule
  experiment of ``benchmarks/noise_schedules.py``, which reuses these runs); ``linear-v``, ``scaled_linear-v`` and
  ``sigmoid-v`` (with ``cosine-v``): the same four schedules with v-prediction.

Each run is kept in ``--workdir/<recipe>`` (a pipeline folder plus its logs); a finished run found there is read
back rather than trained again. Prints a markdown table and writes it with all numbers to ``--output_json``.
Results are in ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from sd_course.evaluate import evaluation, metrics
from sd_course.pixel.diffusion import DiffusionConfig as TrainConfig
from sd_course.pixel.diffusion import PixelDiffusion
from sd_course.train.loop import train

FAST = dict(train_batch_size=64, learning_rate=1e-3, lr_warmup_steps=100, mixed_precision="bf16", ema_max_decay=0.999)
COSINE = dict(FAST, ddpm_beta_schedule="squaredcos_cap_v2")
COSINE_V = dict(COSINE, prediction_type="v_prediction")
RECIPES = {
    # diffusers' example defaults: --train_batch_size 16 --learning_rate 1e-4 --lr_warmup_steps 500 --ema_max_decay 0.9999
    "baseline": dict(train_batch_size=16, learning_rate=1e-4, lr_warmup_steps=500, mixed_precision="no",
                     ema_max_decay=0.9999),
    "fast": FAST,
    "cosine": COSINE,
    "cosine-small": dict(COSINE, model_config_name_or_path="mnist-small"),
    "cosine-narrow": dict(COSINE, model_config_name_or_path="mnist-narrow"),
    "cosine-v": COSINE_V,
    "cosine-v-small": dict(COSINE_V, model_config_name_or_path="mnist-small"),
    "cosine-v-snr5": dict(COSINE_V, snr_gamma=5.0),
    "cosine-v-b128": dict(COSINE_V, train_batch_size=128, learning_rate=1.4e-3),  # sqrt(2) x lr for 2 x batch
    "cosine-v-ema9999": dict(COSINE_V, ema_max_decay=0.9999),
    "scaled_linear": dict(FAST, ddpm_beta_schedule="scaled_linear"),
    "sigmoid": dict(FAST, ddpm_beta_schedule="sigmoid"),
    # the noise-schedule experiment again with v-prediction (with `cosine-v`): benchmarks/noise_schedules.py
    "linear-v": dict(FAST, prediction_type="v_prediction"),
    "scaled_linear-v": dict(FAST, ddpm_beta_schedule="scaled_linear", prediction_type="v_prediction"),
    "sigmoid-v": dict(FAST, ddpm_beta_schedule="sigmoid", prediction_type="v_prediction"),
}
FID, KID = f"fid_{metrics.FEATURE_NAME}", f"kid_{metrics.FEATURE_NAME}_mean"
PRECISION, RECALL = f"precision_{metrics.FEATURE_NAME}", f"recall_{metrics.FEATURE_NAME}"
CLASSES = f"classes_covered_{metrics.FEATURE_NAME}"


def recipe_config(name: str, args, output_dir: Path) -> TrainConfig:
    settings = {"model_config_name_or_path": args.preset, **RECIPES[name]}
    if args.mixed_precision is not None:  # e.g. fp32 on a CPU without native bf16, where bf16 is 3x slower
        settings["mixed_precision"] = args.mixed_precision
    return TrainConfig(
        dataset_name=args.dataset_name, max_train_samples=args.max_train_samples, num_epochs=args.epochs,
        use_ema=True, seed=args.seed, output_dir=str(output_dir), save_images_epochs=0, save_model_epochs=0,
        checkpointing_steps=0, logger="none", eval_epochs=1, overwrite_output_dir=True, **settings)


def finished(output_dir: Path, epochs: int) -> bool:
    log = output_dir / "logs" / "eval.jsonl"
    return (output_dir / "model_index.json").is_file() and log.is_file() and \
        len(log.read_text().splitlines()) >= epochs


def run_recipe(name: str, args, evaluator, workdir: Path) -> list[dict]:
    """Train one recipe (or read back a finished run); returns one row per epoch (metrics, images, minutes)."""
    out = workdir / name
    cfg = recipe_config(name, args, out)
    if not finished(out, args.epochs):
        train(cfg, PixelDiffusion(cfg), evaluate=evaluator)
    losses = [json.loads(line) for line in (out / "logs" / "loss.jsonl").read_text().splitlines()]
    rows = []
    for record in map(json.loads, (out / "logs" / "eval.jsonl").read_text().splitlines()):
        # mean loss over the last 50 steps before this evaluation: a smoother figure than the last batch's loss
        recent = [r["loss"] for r in losses if r["step"] <= record["step"]][-50:]
        rows.append({**record, "recipe": name, "images": record["step"] * cfg.train_batch_size,
                     "minutes": record["train_seconds"] / 60, "loss": sum(recent) / len(recent),
                     "fid": record[FID], "kid": record[KID], "output_dir": str(out)})
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| recipe | epoch | images seen | training minutes | loss (last 50 steps) | FID (classifier) | KID | "
             "precision | recall | classes covered |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['recipe']} | {r['epoch']} | {r['images']:,} | {r['minutes']:.1f} | {r['loss']:.4f} | "
                     f"{r['fid']:.1f} | {r['kid']:.4f} | {r[PRECISION]:.2f} | {r[RECALL]:.2f} | {r[CLASSES]:.0f} |")
    return "\n".join(lines)


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset_name", default="ylecun/mnist", help="Hub id or local folder with train and test splits")
    p.add_argument("--recipes", default=",".join(r for r in RECIPES if r != "baseline"),
                   help=f"comma-separated, from {list(RECIPES)}")
    p.add_argument("--preset", default="mnist", help="U-Net preset of the recipes that do not name their own")
    p.add_argument("--max_train_samples", type=int, default=10000, help="training images (the first N)")
    p.add_argument("--epochs", type=int, default=2, help="epochs per recipe; scored after each")
    p.add_argument("--eval_samples", type=int, default=1000, help="samples per score (fixed across recipes)")
    p.add_argument("--eval_steps", type=int, default=25, help="DPM-Solver++ steps per sample")
    p.add_argument("--mixed_precision", default=None, choices=["no", "bf16"],
                   help="override every recipe's precision (default: the recipe's own, bf16 for most; pass `no` on "
                        "a CPU without AVX512-BF16 or AMX, where bf16 is ~3x slower)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default="runs/recipe_sweep", help="where each recipe's run is kept (and reused)")
    p.add_argument("--output_json", default=None)
    return p.parse_args(argv)


def make_sweep_evaluator(args):
    """The scorer of every recipe: same samples (seeds), sampler and reference for all."""
    return evaluation.make_evaluator(f"{args.dataset_name}:test", args.eval_samples, seed=args.seed,
                                     num_inference_steps=args.eval_steps, scheduler="dpm++")


def main(argv=None):
    args = parse(argv)
    names = args.recipes.split(",")
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        raise SystemExit(f"unknown recipe(s) {unknown}; choose from {list(RECIPES)}")

    print(f"torch threads: {torch.get_num_threads()}")
    evaluator = make_sweep_evaluator(args)
    rows = []
    start = time.time()
    for name in names:
        rows += run_recipe(name, args, evaluator, Path(args.workdir))
        print(table([r for r in rows if r["recipe"] == name]).split("\n", 2)[-1], flush=True)
    print(f"\n{len(names)} recipes, {args.max_train_samples} images x {args.epochs} epochs, metrics on "
          f"{args.eval_samples} samples (dpm++, {args.eval_steps} steps); {(time.time() - start) / 60:.1f} min in all\n")
    print(table(rows))
    if args.output_json:
        Path(args.output_json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
