"""How does iterative noise removal help? FID against the number of model calls, from 1 to 1000.

    python benchmarks/fid_vs_steps.py --reference ../shared/data/mnist:test                  # ~15 min, shipped model
    python benchmarks/fid_vs_steps.py --model runs/mnist --samplers ddim --steps 1,10,100 --num_samples 100

The same ``--num_samples`` starting noises (seed 0) are denoised by the model in 1, 2, 5, 10, 25, 50, 100 and 1000
network calls, with DDIM (eta 0, "trailing" timesteps: the probability-flow ODE, Song et al. 2021) and DPM-Solver++ (a higher-order
solver of the same ODE; up to 100 calls), and scored with the shipped classifier's features against the test split.

One call is the *one-step denoise*: from pure noise x_T the network's best single guess of x_0 is the conditional
mean E[x_0 | x_T], which for pure noise is close to the average digit, a blur: the Part 1 lesson (an MSE-trained
inverse of a many-to-one map predicts an average; sd_course/inversion/arcsin.py). Each further step asks a much easier
question (undo a little noise), so the averages sharpen into one digit. Also draws ``--output`` (a row of samples
per step count, same seeds) and writes every number to ``--output_json``. Results: benchmarks/README.md section 11.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from sd_course.core.device import device_argument, resolve_device
from sd_course.core.options import DEVICE_HELP
from sd_course.core.provenance import relative_to_root, write_result
from sd_course.evaluate.classifier import DEFAULT_CLASSIFIER_DIR
from sd_course.evaluate.metrics import FEATURE_NAME, load_feature_extractor, prepare_reference, score_images
from sd_course.pixel.pipeline import default_model_path, generate, load_pipeline

FID, PRECISION, RECALL = (f"{m}_{FEATURE_NAME}" for m in ("fid", "precision", "recall"))
MAX_STEPS = {"ddim": 1000, "dpm++": 100}  # DPM-Solver++ converges by 25-50 calls: 1000 would only cost time


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="a pipeline folder (default: the shipped pipelines/ddpm-mnist)")
    p.add_argument("--reference", default="ylecun/mnist:test")
    p.add_argument("--samplers", default="ddim,dpm++")
    p.add_argument("--steps", default="1,2,5,10,25,50,100,1000")
    p.add_argument("--num_samples", type=int, default=300)
    p.add_argument("--device", default="auto", type=device_argument, help=DEVICE_HELP)
    p.add_argument("--output", default="runs/fid_vs_steps.png")
    p.add_argument("--output_json", default="runs/fid_vs_steps.json",
                   help="every number, with the command, the model's weights hashes, the machine and the date")
    args = p.parse_args(argv)
    extractor = load_feature_extractor(None)
    reference = prepare_reference(args.reference, extractor, None, show_progress=False)
    rows, pictures = [], {}
    for sampler in args.samplers.split(","):
        pipe = load_pipeline(args.model, sampler, device=args.device)
        if sampler == "ddim":
            # DDIM's default "leading" spacing starts a 1-step run at t = 0 (it would return the noise untouched);
            # "trailing" starts every run at t = T-1, pure noise (Lin et al. 2024, table 2)
            pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, timestep_spacing="trailing")
        for steps in [int(s) for s in args.steps.split(",")]:
            if steps > MAX_STEPS.get(sampler, 1000):
                continue
            start = time.time()
            images = generate(pipe, args.num_samples, batch_size=250, num_inference_steps=steps, seed=0,
                              show_progress=False)
            seconds = time.time() - start
            scores = score_images(images, reference, extractor, 0)
            rows.append({"sampler": sampler, "model_calls": steps, "fid": scores[FID], "precision": scores[PRECISION],
                         "recall": scores[RECALL], "images_per_s": args.num_samples / seconds})
            if sampler == "ddim":
                pictures[steps] = images[:8]
            print(json.dumps(rows[-1]), flush=True)

    print(f"\nFID against model calls ({args.num_samples} samples, seed 0, model {args.model or 'pipelines/ddpm-mnist'})\n")
    samplers = list(dict.fromkeys(r["sampler"] for r in rows))
    counts = sorted({r["model_calls"] for r in rows})
    print("| model calls | " + " | ".join(f"FID {s}" for s in samplers) + " | images/s (ddim) |")
    print("|---|" + "---|" * (len(samplers) + 1))
    for n in counts:
        cells = []
        for s in samplers:
            match = [r for r in rows if r["sampler"] == s and r["model_calls"] == n]
            cells.append(f"{match[0]['fid']:.1f}" if match else "-")
        speed = [r["images_per_s"] for r in rows if r["sampler"] == "ddim" and r["model_calls"] == n]
        print(f"| {n} | " + " | ".join(cells) + (f" | {speed[0]:.1f} |" if speed else " | - |"))
    if pictures:
        plot(pictures, Path(args.output))
        print(f"wrote {args.output}")
    write_result(args.output_json, dict(model=args.model or relative_to_root(default_model_path()),
                                        num_samples=args.num_samples, reference=args.reference, rows=rows),
                 inputs=[args.model or default_model_path(), DEFAULT_CLASSIFIER_DIR / "model.safetensors"],
                 device=resolve_device(args.device))
    print(f"wrote {args.output_json}")


def plot(pictures: dict, path: Path) -> None:
    """One row per step count: the same 8 starting noises, denoised in that many DDIM calls."""
    from matplotlib.figure import Figure

    from sd_course.core.images import image_grid

    fig = Figure(figsize=(7, 0.95 * len(pictures)))
    for ax, (steps, images) in zip(fig.subplots(len(pictures), 1), pictures.items()):
        ax.imshow(image_grid(images, cols=len(images), min_cell=28))
        ax.set_ylabel(f"{steps}", rotation=0, labelpad=18, va="center")
        ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle("DDIM samples from the same noise, by number of model calls", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
