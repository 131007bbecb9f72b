"""Does a recipe draw digits in its minutes? Train it (whole), time it, score it: FID, confidence, every digit.

    python benchmarks/quick_recipes.py --config training/configs/mnist-quick.yaml --reference ylecun/mnist:test
    python benchmarks/quick_recipes.py --config training/configs/mnist-quick.yaml --precisions no,bf16 --seeds 0,1 \\
        --reference ../shared/data/mnist:test --output_json quick_parity.json      # bf16 against fp32, two seeds
    python benchmarks/quick_recipes.py --config training/configs/mini-sd-quick.yaml --guidance_scales 2,3 \\
        --reference ../shared/data/mnist:test                                        # Part 3's first run
    python benchmarks/quick_recipes.py --config training/configs/mnist-quick.yaml \\
        --variant "small=--model_config_name_or_path mnist-small" --variant "as-is="  # recipes side by side

Each (variant, precision, seed) trains the recipe from scratch under the one loop (``sd_course.app.launch.main``,
as ``accelerate launch training/train_unconditional.py --config ...`` or ``train_text_to_image.py`` does: the
script the config's header names), then samples ``--num_samples`` digits (DPM-Solver++, ``--num_inference_steps``;
``--schedulers`` scores the same run with other samplers too, ``--sampling_seeds`` from other starting noises: at
n = 200 another set of noises gives another FID (the result's ``fid_min`` and ``fid_max`` say by how much), so a
recipe is judged by its mean over two or three, the ``summary`` rows of the result) and scores them against
held-out real digits with the shipped classifier: ``fid_mnist_classifier``, the classifier's mean confidence, the
share of the rarest digit, and for a text-to-image recipe the prompt accuracy (training and held-out phrasings) at
each ``--guidance_scales``. The targets of a first run (issue 31): Part 2 at
most 10 minutes on 2 CPU cores, mean confidence >= 0.9, FID <= 80 at n = 200, every digit >= 5%; Part 3 at most 5
minutes, >= 90% read right, FID <= 60. ``--output_json`` writes the rows with their provenance (the command, the
hashes of the recipe, the VAE and the classifier, the machine, the date): ``sd-course results rerun ID`` re-runs it.
Any other flag goes to the training (e.g. ``--num_epochs 20``), before each variant's own flags.
"""

from __future__ import annotations

import argparse
import json
import shlex
import tempfile
import time
from pathlib import Path

import torch
import yaml

from sd_course.app.launch import main as launch
from sd_course.core.device import device_argument
from sd_course.core.options import DEVICE_HELP
from sd_course.core.provenance import describe_device, write_result
from sd_course.evaluate.evaluation import evaluate
from sd_course.evaluate.classifier import DEFAULT_CLASSIFIER_DIR
from sd_course.latent.text_to_image import TextToImage
from sd_course.pixel.diffusion import PixelDiffusion


SAMPLING_SEED = 1234  # the starting noises every result before --sampling_seeds was scored on


def objective_of(config: str):
    """The objective the recipe is for: a config with a text encoder is a text-to-image recipe."""
    settings = yaml.safe_load(Path(config).read_text()) or {}
    return TextToImage if ("text_encoder_config" in settings or "vae_name_or_path" in settings) else PixelDiffusion


def recipe_inputs(config: str, extra: list[str] = ()) -> list[str]:
    """The files the result depends on: the recipe, the classifier behind FID, and the VAE the recipe trains on
    (a --vae_name_or_path flag, else the recipe's, else the shipped one)."""
    settings = yaml.safe_load(Path(config).read_text()) or {}
    inputs = [config, str(DEFAULT_CLASSIFIER_DIR / "model.safetensors")]
    if objective_of(config) is TextToImage:
        flags = list(extra)
        vae = flags[flags.index("--vae_name_or_path") + 1] if "--vae_name_or_path" in flags[:-1] else None
        inputs.append(vae or settings.get("vae_name_or_path") or "pipelines/mini-sd-mnist/vae")
    return inputs


def run(config: str, precision: str, seed: int, reference: str, num_samples: int, steps: int, flags: list[str],
        keep: Path | None, guidance_scales: list[float], variant: str | None,
        schedulers: tuple[str, ...] = ("dpm++",), sampling_seeds: tuple[int, ...] = (SAMPLING_SEED,),
        device: str = "cpu") -> list[dict]:
    objective = objective_of(config)
    with tempfile.TemporaryDirectory() as tmp:
        out = (keep / f"{variant or 'run'}-{precision}-seed{seed}") if keep else Path(tmp) / "run"
        start = time.time()
        launch(["--config", config, "--mixed_precision", precision, "--seed", str(seed), "--output_dir", str(out),
                "--save_images_epochs", "0", "--save_model_epochs", "0", "--checkpointing_steps", "0",
                "--logger", "none", *flags], objective_class=objective, evaluate_factory=None)
        minutes = (time.time() - start) / 60
        summary = json.loads((out / "train_summary.json").read_text())
        rows = []
        for guidance, scheduler, sampling_seed in [
                (g, s, n) for g in (guidance_scales if objective is TextToImage else [None]) for s in schedulers
                for n in sampling_seeds]:
            scores = evaluate(model=str(out), reference=reference, num_samples=num_samples, scheduler=scheduler,
                              num_inference_steps=steps, seed=sampling_seed, print_table=False, show_progress=False,
                              device=device, **({} if guidance is None else dict(guidance_scale=guidance)))
            histogram = scores.get("class_histogram_mnist_classifier") or []
            row = dict(variant=variant, flags=shlex.join(flags), precision=summary["mixed_precision"], seed=seed,
                       minutes=round(minutes, 2), train_minutes=round(summary["train_seconds"] / 60, 2),
                       steps=summary["global_step"],
                       batch=json.loads((out / "training_config.json").read_text())["train_batch_size"],
                       images_per_s=summary["images_per_s"], fid=round(scores["fid_mnist_classifier"], 1),
                       mean_confidence=round(scores.get("mean_confidence_mnist_classifier", float("nan")), 3),
                       rarest_digit=round(min(histogram), 3) if histogram else None, n=num_samples,
                       scheduler=scheduler, num_inference_steps=steps, sampling_seed=sampling_seed)
            if guidance is not None:
                row.update(guidance=guidance, prompt_accuracy=round(scores["prompt_accuracy"], 3),
                           prompt_accuracy_heldout=round(scores["prompt_accuracy_heldout"], 3))
            rows.append(row)
    return rows


def seed_list(text: str) -> tuple[int, ...]:
    """``--sampling_seeds 1234,4321`` -> (1234, 4321); anything else is one line from argparse, before any training."""
    try:
        return tuple(int(n) for n in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not comma-separated integers, e.g. 1234,4321") from None


def summarise(rows: list[dict]) -> list[dict]:
    """One row per trained run and sampler (and guidance): FID and confidence averaged over the sampling seeds, the
    rarest digit's share at its lowest, and FID's range; empty when each run was scored on one set of noises."""
    measures = ("fid", "mean_confidence", "rarest_digit", "sampling_seed", "prompt_accuracy",
                "prompt_accuracy_heldout")
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        key = tuple((k, v) for k, v in row.items() if k not in measures)
        groups.setdefault(key, []).append(row)
    summary = []
    for key, group in groups.items():
        if len(group) < 2:
            continue
        fids = [r["fid"] for r in group]
        row = dict(key, sampling_seeds=[r["sampling_seed"] for r in group], fid=round(sum(fids) / len(fids), 1),
                   fid_min=min(fids), fid_max=max(fids),
                   mean_confidence=round(sum(r["mean_confidence"] for r in group) / len(group), 3),
                   rarest_digit=min((r["rarest_digit"] for r in group if r["rarest_digit"] is not None), default=None))
        for name in ("prompt_accuracy", "prompt_accuracy_heldout"):
            if name in group[0]:
                row[name] = round(sum(r[name] for r in group) / len(group), 3)
        summary.append(row)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="training/configs/mnist-quick.yaml")
    parser.add_argument("--precisions", default="auto", help="comma-separated: auto, no (fp32), bf16")
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds")
    parser.add_argument("--reference", default="ylecun/mnist:test", help="held-out real digits, NAME_OR_PATH[:split]")
    parser.add_argument("--num_samples", type=int, default=200)
    parser.add_argument("--num_inference_steps", type=int, default=20)
    parser.add_argument("--schedulers", default="dpm++",
                        help="comma-separated samplers to score each run with (the same steps and seed), e.g. "
                             "dpm++,dpm++-2m-sde: on a model trained this briefly the sampler matters")
    parser.add_argument("--sampling_seeds", type=seed_list, default=(SAMPLING_SEED,),
                        help="comma-separated seeds of the starting noises: each trained run is scored on each set "
                             "(at n = 200 another set gives another FID: score two or three)")
    parser.add_argument("--guidance_scales", default="2", help="text-to-image recipes: comma-separated CFG scales")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=FLAGS",
                        help="a named set of training flags (repeatable): each is trained and scored in turn")
    parser.add_argument("--keep_runs", default=None, help="keep the trained runs in this folder")
    parser.add_argument("--device", default="auto", type=device_argument,
                        help="sampling and scoring the trained runs (training runs where accelerate puts it); "
                             + DEVICE_HELP)
    parser.add_argument("--output_json", default=None)
    args, extra = parser.parse_known_args()  # anything else goes to the training flags (e.g. --num_epochs 20)
    variants = [(None, [])] if not args.variant else [
        (name, shlex.split(flags)) for name, _, flags in (v.partition("=") for v in args.variant)]
    print(f"machine: {describe_device()}; recipe {args.config} {' '.join(extra)}")
    rows = []
    for name, flags in variants:
        for seed in [int(s) for s in args.seeds.split(",")]:
            for precision in args.precisions.split(","):
                for row in run(args.config, precision, seed, args.reference, args.num_samples,
                               args.num_inference_steps, extra + flags,
                               Path(args.keep_runs) if args.keep_runs else None,
                               [float(g) for g in args.guidance_scales.split(",")], name,
                               tuple(s.strip() for s in args.schedulers.split(",")),
                               args.sampling_seeds, args.device):
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    summary = summarise(rows)
    for row in summary:
        print("mean over sampling seeds:", json.dumps(row))
    if args.output_json:
        write_result(args.output_json, dict(config=args.config, extra=extra, reference=args.reference, rows=rows,
                                            summary=summary),
                     inputs=recipe_inputs(args.config, extra),
                     device="cuda" if torch.cuda.is_available() else "cpu")  # where accelerate trained: the minutes


if __name__ == "__main__":
    main()
