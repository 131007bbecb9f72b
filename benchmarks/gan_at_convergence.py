"""GANs against diffusion where both have stopped improving: the question of benchmarks/gan_vs_diffusion.py, asked
again at the end of training instead of at a tiny budget.

    python benchmarks/gan_at_convergence.py --dataset_name ../shared/data/mnist \
        --output docs/figures/gan_at_convergence.png --output_json benchmarks/results/gan_at_convergence.json
    python benchmarks/gan_at_convergence.py --dataset_name builtin:mnist-2k --max_train_samples 256 --epochs 2 \
        --gan_seeds 0 --sampling_seeds 0 --num_samples 100 --diffusion_steps 5 \
        --reference builtin:mnist-2k:train                                          # a one-minute smoke run

1. **The GAN** (sd_course/gan/dcgan.py, 0.90M + 0.14M parameters, DCGAN's Adam settings) is trained from scratch
   with each of ``--gan_seeds`` for ``--epochs`` passes over the training digits, by the package's one training loop,
   keeping a snapshot after every epoch. Every snapshot draws ``--num_samples`` images (seed 0) and is scored: the
   FID-per-epoch curve of each seed shows whether it has stopped improving (and how much it wanders once it has:
   a GAN's game has no minimum to settle into).
2. **The diffusion model** is the shipped ``pipelines/ddpm-mnist`` (75 epochs on a GPU): its card's epoch ladder
   (``ladder.json``, FID against epochs) shows it flat from epoch ~30. It is one training run, so its spread here is
   the spread over ``--sampling_seeds`` (``--num_samples`` images each, its card's recommended sampler).
3. Both are scored the same way: the shipped classifier's features against the test split (FID, KID, precision,
   recall, classes covered) and the sampling speed (network calls and images/s on this machine).

Writes ``--output_json`` (every epoch of every seed, with provenance) and ``--output`` (FID against epochs for each GAN
seed beside the diffusion model's band, and samples of both). Results: benchmarks/README.md section 10.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from sd_course.core.images import image_grid
from sd_course.core.models import count_parameters
from sd_course.core.provenance import write_result
from sd_course.evaluate.classifier import DEFAULT_CLASSIFIER_DIR
from sd_course.evaluate.metrics import FEATURE_NAME, load_feature_extractor, prepare_reference, score_images
from sd_course.gan.dcgan import GAN, GANConfig, generate, load_generator
from sd_course.pixel.pipeline import default_model_path, load_pipeline
from sd_course.pixel.pipeline import generate as sample_pipeline
from sd_course.train.loop import train

METRICS = {name: f"{name}_{FEATURE_NAME}" for name in ("fid", "precision", "recall", "classes_covered")}
METRICS["kid"] = f"kid_{FEATURE_NAME}_mean"
LAST_EPOCHS = 3  # the plateau's level: the mean FID of a run's last 3 epochs


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset_name", default="ylecun/mnist", help="Hub id or local folder with train and test splits")
    p.add_argument("--reference", default=None, help="the real images scored against (default: DATASET:test)")
    p.add_argument("--max_train_samples", type=int, default=None, help="default: all 60,000 training digits")
    p.add_argument("--epochs", type=int, default=25, help="GAN training epochs (a snapshot scored after each)")
    p.add_argument("--mixed_precision", default="auto", choices=["auto", "no", "bf16"],
                   help="the GANs' training precision (auto: bf16 where the hardware computes it natively)")
    p.add_argument("--gan_seeds", default="0,1,2", help="one GAN trained from scratch per seed")
    p.add_argument("--diffusion_model", default=None, help="default: the shipped pipelines/ddpm-mnist")
    p.add_argument("--diffusion_scheduler", default="dpm++-2m-sde", help="its card's recommendation")
    p.add_argument("--diffusion_steps", type=int, default=25)
    p.add_argument("--sampling_seeds", default="0,1,2", help="the diffusion model draws one set per seed")
    p.add_argument("--num_samples", type=int, default=1000, help="images per score")
    p.add_argument("--workdir", default="runs/gan_at_convergence", help="the GAN runs and their snapshots")
    p.add_argument("--output", default="runs/gan_at_convergence/gan_at_convergence.png")
    p.add_argument("--output_json", default="runs/gan_at_convergence/gan_at_convergence.json")
    return p.parse_args(argv)


def scores_of(images: torch.Tensor, reference, extractor) -> dict:
    scores = score_images(images, reference, extractor, 0)
    return {name: scores[key] for name, key in METRICS.items()}


def train_gan(args, seed: int) -> Path:
    """One GAN, ``args.epochs`` epochs, a snapshot (``epoch-0001/`` ...) after each; trained once, read back after."""
    out = Path(args.workdir) / f"gan-seed{seed}"
    if (out / f"epoch-{args.epochs:04d}" / "config.json").is_file():
        print(f"{out}: already trained, read back", flush=True)
        return out
    cfg = GANConfig(dataset_name=args.dataset_name, max_train_samples=args.max_train_samples, seed=seed,
                    num_epochs=args.epochs, mixed_precision=args.mixed_precision, save_model_epochs=1,
                    save_images_epochs=0, checkpointing_steps=0, logger="none", output_dir=str(out),
                    overwrite_output_dir=True)
    return train(cfg, GAN(cfg))


def gan_curve(folder: Path, args, reference, extractor) -> list[dict]:
    """FID and the rest for every epoch's snapshot of one GAN run (the same latents, seed 0, for every epoch)."""
    rows = []
    for epoch in range(1, args.epochs + 1):
        generator = load_generator(folder / f"epoch-{epoch:04d}")
        rows.append({"epoch": epoch, **scores_of(generate(generator, args.num_samples, seed=0), reference, extractor)})
        print(f"{folder.name} epoch {epoch}: FID {rows[-1]['fid']:.1f}", flush=True)
    return rows


def sampling_speed(kind: str, model, args) -> float:
    """Images/s of one batch of 250 (the GAN: one call per image; diffusion: ``--diffusion_steps`` calls each)."""
    start = time.perf_counter()
    if kind == "gan":
        generate(model, 250, seed=0)
    else:
        sample_pipeline(model, 250, batch_size=250, num_inference_steps=args.diffusion_steps, seed=0,
                        show_progress=False)
    return 250 / (time.perf_counter() - start)


def main(argv=None):
    args = parse_args(argv)
    started = time.time()
    extractor = load_feature_extractor(None)
    reference = prepare_reference(args.reference or f"{args.dataset_name}:test", extractor, None, show_progress=False)
    gan_seeds = [int(s) for s in args.gan_seeds.split(",")]
    sampling_seeds = [int(s) for s in args.sampling_seeds.split(",")]

    # 1. The GANs: a curve per seed, then the plateau (mean of the last epochs) and the final epoch
    gan_runs, pictures = [], {}
    for seed in gan_seeds:
        folder = train_gan(args, seed)
        summary = json.loads((folder / "train_summary.json").read_text())
        curve = gan_curve(folder, args, reference, extractor)
        last = [row["fid"] for row in curve[-LAST_EPOCHS:]]
        best = min(curve, key=lambda row: row["fid"])
        gan_runs.append({"seed": seed, "train_minutes": summary["train_seconds"] / 60,
                         "steps": summary.get("global_step"), "curve": curve, "final": curve[-1],
                         "best_epoch": best["epoch"], "best_fid": best["fid"],
                         "last_epochs_fid_mean": statistics.mean(last),
                         "last_epochs_fid_sd": statistics.stdev(last) if len(last) > 1 else 0.0})
        pictures[f"GAN seed {seed}, epoch {args.epochs}"] = generate(
            load_generator(folder / f"epoch-{args.epochs:04d}"), 16, seed=0)
    generator = load_generator(Path(args.workdir) / f"gan-seed{gan_seeds[0]}" / f"epoch-{args.epochs:04d}")
    gan_speed = sampling_speed("gan", generator, args)

    # 2. The diffusion model: one trained model, scored on several sets of samples
    model_path = args.diffusion_model or str(default_model_path())
    pipe = load_pipeline(model_path, args.diffusion_scheduler)
    pipe.set_progress_bar_config(disable=True)
    diffusion_rows = []
    for seed in sampling_seeds:
        images = sample_pipeline(pipe, args.num_samples, batch_size=250, num_inference_steps=args.diffusion_steps,
                                 seed=seed, show_progress=False)
        diffusion_rows.append({"sampling_seed": seed, **scores_of(images, reference, extractor)})
        print(f"diffusion sampling seed {seed}: FID {diffusion_rows[-1]['fid']:.1f}", flush=True)
        if seed == sampling_seeds[0]:
            pictures[f"diffusion ({args.diffusion_scheduler} {args.diffusion_steps})"] = images[:16]
    diffusion_speed = sampling_speed("diffusion", pipe, args)

    # 3. The comparison: each kind's FID over its seeds
    def spread(values: list[float]) -> dict:
        return {"mean": statistics.mean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
                "min": min(values), "max": max(values), "n": len(values)}

    summary = {
        "gan_final_fid": spread([run["final"]["fid"] for run in gan_runs]),
        "gan_last_epochs_fid": spread([run["last_epochs_fid_mean"] for run in gan_runs]),
        "gan_best_fid": spread([run["best_fid"] for run in gan_runs]),
        "diffusion_fid": spread([row["fid"] for row in diffusion_rows]),
        "gan_precision": spread([run["final"]["precision"] for run in gan_runs]),
        "gan_recall": spread([run["final"]["recall"] for run in gan_runs]),
        "diffusion_precision": spread([row["precision"] for row in diffusion_rows]),
        "diffusion_recall": spread([row["recall"] for row in diffusion_rows]),
        "gan_sampling_images_per_s": gan_speed, "diffusion_sampling_images_per_s": diffusion_speed,
        "gan_parameters": count_parameters(generator), "diffusion_parameters": count_parameters(pipe.unet),
        "diffusion_calls_per_image": args.diffusion_steps,
    }
    summary["fid_ratio_gan_over_diffusion"] = summary["gan_final_fid"]["mean"] / summary["diffusion_fid"]["mean"]
    print(json.dumps(summary, indent=1))

    plot(gan_runs, diffusion_rows, pictures, Path(args.output))
    ladder = Path(model_path) / "ladder.json"
    write_result(args.output_json, dict(args=vars(args), gan=gan_runs, diffusion=diffusion_rows, summary=summary,
                                        minutes=(time.time() - started) / 60),
                 inputs=[model_path, DEFAULT_CLASSIFIER_DIR / "model.safetensors"] + ([ladder] if ladder.is_file()
                                                                                      else []))
    print(f"wrote {args.output} and {args.output_json} ({(time.time() - started) / 60:.1f} min)")


def plot(gan_runs: list[dict], diffusion_rows: list[dict], pictures: dict, path: Path) -> None:
    """Left: FID against epochs for every GAN seed, the diffusion model's range as a band. Right: samples."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.5 + 2.0 * len(pictures), 3.6))
    grid = fig.add_gridspec(1, 1 + len(pictures), width_ratios=[2.2] + [1] * len(pictures))
    ax = fig.add_subplot(grid[0, 0])
    for run in gan_runs:
        ax.plot([r["epoch"] for r in run["curve"]], [r["fid"] for r in run["curve"]], marker=".",
                label=f"GAN seed {run['seed']}")
    fids = [row["fid"] for row in diffusion_rows]
    ax.axhspan(min(fids), max(fids) + 1e-6, color="black", alpha=0.25,
               label=f"diffusion (shipped, {len(fids)} sample sets)")
    ax.set_yscale("log")
    ax.set_xlabel("GAN training epoch")
    ax.set_ylabel("FID (classifier features, log)")
    ax.legend(fontsize=7)
    for i, (title, images) in enumerate(pictures.items()):
        sub = fig.add_subplot(grid[0, i + 1])
        sub.imshow(image_grid(images, cols=4, min_cell=28))
        sub.set_title(title, fontsize=8)
        sub.set_axis_off()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
