"""Does a recipe draw digits in its minutes? Train it (whole), time it, score it: FID, confidence, every digit.

    python benchmarks/quick_recipes.py --config training/configs/mnist-quick.yaml --reference ylecun/mnist:test
    python benchmarks/quick_recipes.py --config training/configs/mnist-quick.yaml --precisions no,bf16 --seeds 0,1 \\
        --reference ../shared/data/mnist:test --output_json quick_parity.json      # bf16 against fp32, two seeds

Each (precision, seed) trains the recipe from scratch under the one loop (``sd_course.app.launch.main``, as
``accelerate launch training/train_unconditional.py --config ...`` does), then samples ``--num_samples`` digits
(DPM-Solver++, ``--num_inference_steps``) and scores them against held-out real digits with the shipped classifier:
``fid_mnist_classifier``, the classifier's mean confidence, and the share of the rarest digit. The targets of a
first run (issue 31): at most 10 minutes on 2 CPU cores, mean confidence >= 0.9, FID <= 80 at n = 200, every digit
>= 5%. Prints one line per run and, with several precisions, the FID of each precision side by side.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from sd_course.app.launch import main as launch
from sd_course.evaluate.evaluation import evaluate
from sd_course.pixel.diffusion import PixelDiffusion
from sd_course.train.loop import cpu_has_native_bf16


def machine() -> str:
    name = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        text = cpuinfo.read_text()
        name = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), name)
    return f"{name}, {'native bf16' if cpu_has_native_bf16() else 'no native bf16'}, {torch.get_num_threads()} threads"


def run(config: str, precision: str, seed: int, reference: str, num_samples: int, steps: int, extra: list[str],
        keep: Path | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = (keep / f"{precision}-seed{seed}") if keep else Path(tmp) / "run"
        start = time.time()
        launch(["--config", config, "--mixed_precision", precision, "--seed", str(seed), "--output_dir", str(out),
                "--save_images_epochs", "0", "--save_model_epochs", "0", "--checkpointing_steps", "0",
                "--logger", "none", *extra], objective_class=PixelDiffusion, evaluate_factory=None)
        minutes = (time.time() - start) / 60
        summary = json.loads((out / "train_summary.json").read_text())
        scores = evaluate(model=str(out), reference=reference, num_samples=num_samples, scheduler="dpm++",
                          num_inference_steps=steps, seed=1234, print_table=False, show_progress=False,
                          device="cpu")
    histogram = scores.get("class_histogram_mnist_classifier") or []
    return dict(precision=summary["mixed_precision"], seed=seed, minutes=round(minutes, 2),
                train_minutes=round(summary["train_seconds"] / 60, 2), steps=summary["global_step"],
                images_per_s=summary["images_per_s"], fid=round(scores["fid_mnist_classifier"], 1),
                mean_confidence=round(scores.get("mean_confidence_mnist_classifier", float("nan")), 3),
                rarest_digit=round(min(histogram), 3) if histogram else None, n=num_samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="training/configs/mnist-quick.yaml")
    parser.add_argument("--precisions", default="auto", help="comma-separated: auto, no (fp32), bf16")
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds")
    parser.add_argument("--reference", default="ylecun/mnist:test", help="held-out real digits, NAME_OR_PATH[:split]")
    parser.add_argument("--num_samples", type=int, default=200)
    parser.add_argument("--num_inference_steps", type=int, default=20)
    parser.add_argument("--keep_runs", default=None, help="keep the trained runs in this folder")
    parser.add_argument("--output_json", default=None)
    args, extra = parser.parse_known_args()  # anything else goes to the training flags (e.g. --num_epochs 20)
    print(f"machine: {machine()}; recipe {args.config} {' '.join(extra)}")
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for precision in args.precisions.split(","):
            row = run(args.config, precision, seed, args.reference, args.num_samples, args.num_inference_steps, extra,
                      Path(args.keep_runs) if args.keep_runs else None)
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.output_json:
        Path(args.output_json).write_text(json.dumps(dict(machine=machine(), config=args.config, extra=extra,
                                                          reference=args.reference, rows=rows), indent=2) + "\n")


if __name__ == "__main__":
    main()
