"""What happens if we change the noise schedule? The lab's question, answered by experiment.

    python benchmarks/noise_schedules.py --dataset_name ../shared/data/mnist --prediction_type v_prediction \
        --preset mnist-narrow --mixed_precision no --eval_samples 300 --num_samples 200 --output_dir docs/figures \
        --output_json benchmarks/results/noise_schedules.json   # README §9, 21 min
    python benchmarks/noise_schedules.py --dataset_name ../shared/data/mnist        # eps, the sweep's own runs
    python benchmarks/noise_schedules.py --dataset_name ../shared/data/mnist --model pipelines/ddpm-mnist \
        --num_samples 200 --output_json benchmarks/results/noise_schedules_crossed.json   # part 3, shipped model

Four U-Nets, identical but for ``--ddpm_beta_schedule`` (``linear``, ``scaled_linear``, ``squaredcos_cap_v2``,
``sigmoid``), trained on the same images for the same number of steps: the runs ``fast``, ``scaled_linear``,
``cosine`` and ``sigmoid`` of ``benchmarks/recipe_sweep.py`` (``linear-v``, ``scaled_linear-v``, ``cosine-v``,
``sigmoid-v`` with ``--prediction_type v_prediction``; read back from ``--workdir``, trained there first if
missing). Measured, all with the same seeds and the shipped classifier's features against the test split:

1. FID / precision / recall against minutes of training (the sweep's evaluations after each epoch);
2. FID against sampling steps (DPM-Solver++ with 5, 10, 25, 50 steps) for each model;
3. each model *sampled with the other schedules' betas* (DPM-Solver++ 25 steps): a model trained on one schedule,
   asked to denoise at noise levels it was not trained for;
4. a figure: samples of each model side by side (``--output_dir``/noise_schedules.png), and the curves
   (``noise_schedules_curves.png``).

Prints markdown tables and writes every number, with its provenance, to ``--output_json`` (default
``--output_dir``/noise_schedules.json). The results and what they
say are in benchmarks/README.md (section 9) and docs/lab.md; ``sd-course schedules`` draws the schedules themselves.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import recipe_sweep
from diffusers import DDPMScheduler

from sd_course.core.device import device_argument, resolve_device
from sd_course.core.options import DEVICE_HELP
from sd_course.core.provenance import write_result
from sd_course.core.schedulers import make_scheduler
from sd_course.evaluate.classifier import DEFAULT_CLASSIFIER_DIR
from sd_course.evaluate.metrics import FEATURE_NAME, load_feature_extractor, prepare_reference, score_images
from sd_course.pixel.pipeline import UnconditionalImagePipeline, generate, load_pipeline

# the recipe of benchmarks/recipe_sweep.py that trains each schedule, by prediction type
RECIPES = {"epsilon": {"linear": "fast", "scaled_linear": "scaled_linear", "squaredcos_cap_v2": "cosine",
                       "sigmoid": "sigmoid"},
           "v_prediction": {"linear": "linear-v", "scaled_linear": "scaled_linear-v", "squaredcos_cap_v2": "cosine-v",
                            "sigmoid": "sigmoid-v"}}
FID, PRECISION, RECALL = (f"{m}_{FEATURE_NAME}" for m in ("fid", "precision", "recall"))
CROSS_STEPS = 25  # DPM-Solver++ steps of part 3 and of the side-by-side samples


def sample_and_score(pipe, steps: int, num_samples: int, seed: int, reference, extractor) -> dict:
    """FID, precision and recall of ``num_samples`` images (seeds from ``seed``), and the images themselves."""
    images = generate(pipe, num_samples, batch_size=250, num_inference_steps=steps, seed=seed, show_progress=False)
    result = score_images(images, reference, extractor, seed)
    return {"fid": result[FID], "precision": result[PRECISION], "recall": result[RECALL], "images": images}


def sampler_with_schedule(trained: UnconditionalImagePipeline, beta_schedule: str) -> UnconditionalImagePipeline:
    """The trained U-Net with DPM-Solver++ on ``beta_schedule``'s noise levels (the model's own when they agree).
    A new pipeline: its first scheduler is what it holds the others to (see UnconditionalImagePipeline)."""
    config = DDPMScheduler.from_config(trained.scheduler.config, beta_schedule=beta_schedule).config
    pipe = UnconditionalImagePipeline(unet=trained.unet, scheduler=make_scheduler("dpm++", config))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset_name", default="ylecun/mnist", help="Hub id or local folder with train and test splits")
    p.add_argument("--workdir", default="runs/recipe_sweep", help="the recipe sweep's runs (read back or trained)")
    p.add_argument("--preset", default="mnist", help="U-Net preset, as in recipe_sweep.py")
    p.add_argument("--max_train_samples", type=int, default=10000, help="as in recipe_sweep.py")
    p.add_argument("--epochs", type=int, default=2, help="as in recipe_sweep.py")
    p.add_argument("--prediction_type", default="epsilon", choices=list(RECIPES),
                   help="what all four U-Nets predict (the recipes of recipe_sweep.py: fast, scaled_linear, cosine, "
                        "sigmoid for epsilon; linear-v, scaled_linear-v, cosine-v, sigmoid-v for v_prediction)")
    p.add_argument("--mixed_precision", default=None, choices=["no", "bf16"], help="as in recipe_sweep.py")
    p.add_argument("--eval_samples", type=int, default=1000, help="samples per score during training (part 1)")
    p.add_argument("--num_samples", type=int, default=500, help="samples per score in parts 2 and 3")
    p.add_argument("--steps", default="5,10,25,50", help="DPM-Solver++ step counts of part 2")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", type=device_argument,
                   help="parts 2 and 3, which sample (training runs where accelerate puts it); " + DEVICE_HELP)
    p.add_argument("--output_dir", default="runs/noise_schedules")
    p.add_argument("--model", default=None,
                   help="part 3 only, for one trained pipeline (e.g. pipelines/ddpm-mnist): sample it with each "
                        "schedule's betas; trains nothing")
    p.add_argument("--output_json", default=None,
                   help="where the result goes, with provenance (default: --output_dir/noise_schedules.json, or "
                        "noise_schedules_crossed.json with --model)")
    args = p.parse_args(argv)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    if args.model:
        return sample_with_every_schedule(args, out)

    # 1. the four training runs and their curves (the sweep's own evaluations: n = its --eval_samples)
    sweep_args = recipe_sweep.parse([f"--dataset_name={args.dataset_name}", f"--workdir={args.workdir}",
                                     f"--max_train_samples={args.max_train_samples}", f"--epochs={args.epochs}",
                                     f"--seed={args.seed}", f"--preset={args.preset}",
                                     f"--eval_samples={args.eval_samples}"]
                                    + ([f"--mixed_precision={args.mixed_precision}"] if args.mixed_precision else []))
    schedules = RECIPES[args.prediction_type]  # schedule -> recipe
    evaluator = None
    curves = {}
    for schedule, recipe in schedules.items():
        if not recipe_sweep.finished(Path(args.workdir) / recipe, args.epochs) and evaluator is None:
            evaluator = recipe_sweep.make_sweep_evaluator(sweep_args)
        curves[schedule] = recipe_sweep.run_recipe(recipe, sweep_args, evaluator, Path(args.workdir))
    print("| schedule | epoch | training minutes | FID | precision | recall |\n|---|---|---|---|---|---|")
    for schedule, rows in curves.items():
        for r in rows:
            print(f"| {schedule} | {r['epoch']} | {r['minutes']:.1f} | {r['fid']:.1f} | {r[PRECISION]:.2f} | "
                  f"{r[RECALL]:.2f} |")

    extractor = load_feature_extractor(None)
    reference = prepare_reference(f"{args.dataset_name}:test", extractor, None, show_progress=False)

    def score(pipe, steps: int) -> dict:
        return sample_and_score(pipe, steps, args.num_samples, args.seed, reference, extractor)

    # 2. FID against sampling steps; 3. sampled with every schedule's betas
    models = {schedule: load_pipeline(str(Path(args.workdir) / recipe), device=args.device)
              for schedule, recipe in schedules.items()}
    steps = [int(s) for s in args.steps.split(",")]
    by_steps, crossed, pictures = {}, {}, {}
    for trained, pipe in models.items():
        own = sampler_with_schedule(pipe, trained)
        by_steps[trained] = {}
        for n in sorted(set(steps) | {CROSS_STEPS}):
            result = score(own, n)
            numbers = {k: v for k, v in result.items() if k != "images"}
            if n in steps:
                by_steps[trained][n] = numbers
            if n == CROSS_STEPS:
                pictures[trained], crossed[(trained, trained)] = result["images"][:16], numbers
        for other in schedules:
            if other != trained:
                result = score(sampler_with_schedule(pipe, other), CROSS_STEPS)
                crossed[(trained, other)] = {k: v for k, v in result.items() if k != "images"}
        print(f"{trained}: {json.dumps(by_steps[trained])}", flush=True)

    print(f"\nFID against DPM-Solver++ steps (n = {args.num_samples}):\n")
    print("| trained with | " + " | ".join(f"{n} steps" for n in steps) + " |")
    print("|---|" + "---|" * len(steps))
    for trained, row in by_steps.items():
        print(f"| {trained} | " + " | ".join(f"{row[n]['fid']:.1f}" for n in steps) + " |")
    print(f"\nFID when sampled with another schedule's betas (DPM-Solver++ {CROSS_STEPS} steps, n = {args.num_samples}); "
          "rows: trained with, columns: sampled with\n")
    print("| trained \\ sampled | " + " | ".join(schedules) + " |")
    print("|---|" + "---|" * len(schedules))
    for trained in schedules:
        print(f"| {trained} | " + " | ".join(f"{crossed[(trained, other)]['fid']:.1f}" for other in schedules) + " |")

    plot_curves(curves, by_steps, out)
    plot_samples(pictures, out)
    result = {"args": vars(args), "curves": curves, "fid_by_steps": by_steps,
              "crossed": [{"trained": a, "sampled": b, **v} for (a, b), v in crossed.items()],
              "minutes": (time.time() - start) / 60}
    output = write_result(args.output_json or out / "noise_schedules.json", result,
                          inputs=[DEFAULT_CLASSIFIER_DIR / "model.safetensors"], device=resolve_device(args.device))
    print(f"\nwrote {output}, {out}/noise_schedules.png, noise_schedules_curves.png "
          f"({(time.time() - start) / 60:.1f} min)")


def sample_with_every_schedule(args, out: Path) -> dict:
    """Part 3 for a well-trained model: its own schedule against the other three, DPM-Solver++ 25 steps, n samples."""
    extractor = load_feature_extractor(None)
    reference = prepare_reference(f"{args.dataset_name}:test", extractor, None, show_progress=False)
    trained = load_pipeline(args.model, device=args.device)
    own = trained.scheduler.config.beta_schedule
    rows = {}
    for schedule in RECIPES["epsilon"]:  # the four schedules
        t0 = time.time()
        result = sample_and_score(sampler_with_schedule(trained, schedule), CROSS_STEPS, args.num_samples, args.seed,
                                  reference, extractor)
        rows[schedule] = {k: v for k, v in result.items() if k != "images"} | {"seconds": round(time.time() - t0, 1)}
        print(f"{schedule}: {rows[schedule]}", flush=True)
    print(f"\n{args.model} (trained with {own}), sampled with each schedule's betas "
          f"(DPM-Solver++ {CROSS_STEPS} steps, n = {args.num_samples}):\n")
    print("| sampled with | FID | precision | recall |\n|---|---|---|---|")
    for schedule, r in rows.items():
        mark = " (its own)" if schedule == own else ""
        print(f"| {schedule}{mark} | {r['fid']:.1f} | {r['precision']:.3f} | {r['recall']:.3f} |")
    result = {"args": vars(args), "trained_with": own, "sampled_with": rows}
    output = write_result(args.output_json or out / "noise_schedules_crossed.json", result,
                          inputs=[args.model, DEFAULT_CLASSIFIER_DIR / "model.safetensors"],
                          device=resolve_device(args.device))
    print(f"wrote {output}")
    return result


def plot_curves(curves: dict, by_steps: dict, out: Path) -> None:
    """noise_schedules_curves.png: FID against training minutes (left) and against DPM-Solver++ steps (right)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullLocator

    fig = Figure(figsize=(10, 3.4))
    ax1, ax2 = fig.subplots(1, 2)
    for schedule, rows in curves.items():
        ax1.plot([r["minutes"] for r in rows], [r["fid"] for r in rows], "o-", label=schedule)
        steps = sorted(by_steps[schedule])
        ax2.plot(steps, [by_steps[schedule][n]["fid"] for n in steps], "o-", label=schedule)
    ax1.set(xlabel="training minutes (2 CPU cores)", ylabel="FID (classifier features)", yscale="log",
            title="FID during training")
    ax2.set(xlabel="DPM-Solver++ steps", ylabel="FID", xscale="log", yscale="log", title="FID against sampling steps")
    ax2.set_xticks(steps, [str(n) for n in steps])
    ax2.xaxis.set_minor_locator(NullLocator())  # the log axis' own minor labels would overprint the step counts
    ax1.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "noise_schedules_curves.png", dpi=110)


def plot_samples(pictures: dict, out: Path) -> None:
    """noise_schedules.png: 16 samples of each model side by side, the same starting noises."""
    from matplotlib.figure import Figure

    from sd_course.core.images import image_grid

    fig = Figure(figsize=(2.6 * len(pictures), 3.0))
    for ax, (schedule, images) in zip(fig.subplots(1, len(pictures)), pictures.items()):
        ax.imshow(image_grid(images, cols=4, min_cell=28))
        ax.set_title(schedule, fontsize=9)
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(out / "noise_schedules.png", dpi=110)


if __name__ == "__main__":
    main()
