"""Quality per CPU-minute: train a few recipes on the same MNIST images and score each against minutes of training.

    python benchmarks/recipe_sweep.py --dataset_name ../shared/data/mnist            # local copy of MNIST
    python benchmarks/recipe_sweep.py --recipes fast,baseline --max_train_samples 4000 --epochs 1   # a quick look

Every recipe trains the ``mnist`` U-Net preset with ``sd_course.training.train`` on the first
``--max_train_samples`` training images for ``--epochs`` epochs, and is scored after every epoch with the metrics
of ``sd_course.metrics`` (FID/KID on the shipped MNIST classifier's features, ``--eval_samples`` samples drawn with
DPM-Solver++ in ``--eval_steps`` steps, always from the same seeds) against the test split. The clock is the
training loop's own (``train_seconds`` in the logs: optimisation steps only, not sampling or scoring), on this
machine, with whatever threads torch uses by default.

The recipes (``RECIPES`` below):

* ``baseline``: the defaults of diffusers' ``examples/unconditional_image_generation/train_unconditional.py``
  (batch 16, lr 1e-4 with 500 warm-up steps, fp32, EMA up to 0.9999), run by our loop.
* ``v1``: our first guess (batch 128, lr 5e-4, 500 warm-up steps, bf16, EMA up to 0.9995).
* ``fast``: batch 64, lr 1e-3 with 100 warm-up steps, bf16, EMA up to 0.999.
* ``fast-cosine``: ``fast`` with the ``squaredcos_cap_v2`` noise schedule (Nichol & Dhariwal 2021).

Prints a markdown table (recipe, epoch, images seen, minutes, loss, FID, KID) and writes it with all numbers to
``--output_json``. Results are in ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from sd_course import evaluation, metrics
from sd_course.diffusion import DiffusionConfig as TrainConfig
from sd_course.training import train

RECIPES = {
    # diffusers' example defaults: --train_batch_size 16 --learning_rate 1e-4 --lr_warmup_steps 500 --ema_max_decay 0.9999
    "baseline": dict(train_batch_size=16, learning_rate=1e-4, lr_warmup_steps=500, mixed_precision="no",
                     ema_max_decay=0.9999),
    "v1": dict(train_batch_size=128, learning_rate=5e-4, lr_warmup_steps=500, mixed_precision="bf16",
               ema_max_decay=0.9995),
    "fast": dict(train_batch_size=64, learning_rate=1e-3, lr_warmup_steps=100, mixed_precision="bf16",
                 ema_max_decay=0.999),
    "fast-cosine": dict(train_batch_size=64, learning_rate=1e-3, lr_warmup_steps=100, mixed_precision="bf16",
                        ema_max_decay=0.999, ddpm_beta_schedule="squaredcos_cap_v2"),
}
FID, KID = f"fid_{metrics.FEATURE_NAME}", f"kid_{metrics.FEATURE_NAME}_mean"


def run_recipe(name: str, args, evaluator, workdir: Path) -> list[dict]:
    """Train one recipe; returns one row per epoch (its metrics, images seen and minutes of training)."""
    out = workdir / name
    cfg = TrainConfig(
        dataset_name=args.dataset_name, max_train_samples=args.max_train_samples, num_epochs=args.epochs,
        model_config_name_or_path=args.preset, use_ema=True, seed=args.seed, output_dir=str(out),
        save_images_epochs=0, save_model_epochs=0, checkpointing_steps=0, logger="none",
        eval_epochs=1, **RECIPES[name])
    train(cfg, evaluate=evaluator)
    losses = [json.loads(line) for line in (out / "logs" / "loss.jsonl").read_text().splitlines()]
    rows = []
    for record in map(json.loads, (out / "logs" / "eval.jsonl").read_text().splitlines()):
        # mean loss over the last 50 steps before this evaluation: a smoother figure than the last batch's loss
        recent = [r["loss"] for r in losses if r["step"] <= record["step"]][-50:]
        rows.append({"recipe": name, "epoch": record["epoch"], "step": record["step"],
                     "images": record["step"] * cfg.train_batch_size, "minutes": record["train_seconds"] / 60,
                     "loss": sum(recent) / len(recent), "fid": record[FID], "kid": record[KID], **record})
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| recipe | epoch | images seen | training minutes | loss (last 50 steps) | FID (classifier) | KID |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['recipe']} | {r['epoch']} | {r['images']:,} | {r['minutes']:.1f} | {r['loss']:.4f} | "
                     f"{r['fid']:.1f} | {r['kid']:.4f} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset_name", default="ylecun/mnist", help="Hub id or local folder with train and test splits")
    p.add_argument("--recipes", default="baseline,v1,fast", help=f"comma-separated, from {list(RECIPES)}")
    p.add_argument("--preset", default="mnist", help="U-Net preset for every recipe")
    p.add_argument("--max_train_samples", type=int, default=8000, help="training images (the first N)")
    p.add_argument("--epochs", type=int, default=2, help="epochs per recipe; scored after each")
    p.add_argument("--eval_samples", type=int, default=300, help="samples per score (fixed across recipes)")
    p.add_argument("--eval_steps", type=int, default=20, help="DPM-Solver++ steps per sample")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output_json", default=None)
    args = p.parse_args(argv)
    names = args.recipes.split(",")
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        raise SystemExit(f"unknown recipe(s) {unknown}; choose from {list(RECIPES)}")

    print(f"torch threads: {torch.get_num_threads()}")
    evaluator = evaluation.make_evaluator(f"{args.dataset_name}:test", args.eval_samples, seed=args.seed,
                                       num_inference_steps=args.eval_steps, scheduler="dpm++")
    rows = []
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            rows += run_recipe(name, args, evaluator, Path(tmp))
            print(table([r for r in rows if r["recipe"] == name]).split("\n", 2)[-1], flush=True)
    print(f"\n{len(names)} recipes, {args.max_train_samples} images x {args.epochs} epochs, metrics on "
          f"{args.eval_samples} samples (dpm++, {args.eval_steps} steps); {(time.time() - start) / 60:.1f} min in all\n")
    print(table(rows))
    if args.output_json:
        Path(args.output_json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
