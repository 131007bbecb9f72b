"""Inpainting, measured: hide the lower half of real test digits, fill it with the pixel model, and ask the shipped
classifier whether it still reads the original digit.

    python benchmarks/inpaint.py                                         # 200 digits, DDPM 50 steps (~2-5 min)
    python benchmarks/inpaint.py --num_images 50 --num_inference_steps 25 --figure ""   # a quick look
    python benchmarks/inpaint.py --scheduler ddim --resample 2           # other settings, same protocol

Three versions of the same N digits go through the classifier (``sd_course/evaluate/classifier.py``, 99.40% on MNIST test):

* ``original``: the digits as they are (the classifier's own ceiling on these N);
* ``lower half blank``: the lower 14 rows set to black (background), the rest untouched: what is left to read;
* ``lower half inpainted``: the lower half filled by the model (``sd_course.pixel.inpaint.inpaint``, RePaint), one fill
  per digit and seed; the upper half is kept exactly.

It prints the share read as the true label for each (with its binomial standard error), and, for the fills, how
often the classifier reads the same class as the *original* image. The digits come from ``--reference``: by default
the MNIST *test* split in ``../shared/data/mnist`` (digits the model never saw), else the bundled
``builtin:mnist-2k:train`` (which the shipped model did see in training: say so when you quote it).
``--figure`` writes original | mask | input | fills for the first 6 digits and 3 seeds (docs/figures/inpaint.png).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

from sd_course.core.data import load_images
from sd_course.core.device import device_argument, resolve_device
from sd_course.core.options import DEVICE_HELP
from sd_course.core.plots import _save_figure, inpaint_figure
from sd_course.core.provenance import relative_to_root, write_result
from sd_course.evaluate.classifier import DEFAULT_CLASSIFIER_DIR, load_classifier, predict
from sd_course.pixel.inpaint import inpaint
from sd_course.pixel.pipeline import default_model_path, load_pipeline

REPO = Path(__file__).resolve().parents[1]
SHARED_TEST = REPO.parent / "shared" / "data" / "mnist"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=default_model_path())
    p.add_argument("--reference", default=None,
                   help="digits to use, NAME_OR_PATH[:split] (default ../shared/data/mnist:test, else builtin:mnist-2k)")
    p.add_argument("--num_images", type=int, default=200)
    p.add_argument("--scheduler", default="ddpm")
    p.add_argument("--num_inference_steps", type=int, default=50)
    p.add_argument("--resample", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch_size", type=int, default=50)
    p.add_argument("--device", default="auto", type=device_argument, help=DEVICE_HELP)
    p.add_argument("--figure", default=str(REPO / "docs" / "figures" / "inpaint.png"), help="'' for none")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: torch's); 1 is much faster when other jobs share the cores")
    p.add_argument("--output_json", default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    reference = args.reference or (f"{SHARED_TEST}:test" if (SHARED_TEST / "test.parquet").is_file()
                                   else "builtin:mnist-2k:train")
    images, labels = load_images(reference, resolution=28, num_images=args.num_images, show_progress=False)
    mask = torch.zeros(1, 1, 28, 28)
    mask[..., 14:, :] = 1  # white = fill: the lower half
    blank = images.clone()
    blank[..., 14:, :] = 0

    pipe = load_pipeline(args.model, args.scheduler, device=args.device)
    start = time.time()
    filled = inpaint(pipe, images, mask, args.num_inference_steps, seed=args.seed, resample=args.resample,
                     batch_size=args.batch_size)
    seconds = time.time() - start

    classifier = load_classifier()
    labels_of = {"original": "original", "blank": "lower half blank", "inpainted": "lower half inpainted"}
    read = {name: predict(classifier, x)[1].argmax(-1) for name, x in
            (("original", images), ("blank", blank), ("inpainted", filled))}
    n = len(images)
    results = dict(reference=reference, n=n, model=relative_to_root(args.model),
                   scheduler=type(pipe.scheduler).__name__,
                   num_inference_steps=args.num_inference_steps, resample=args.resample, seed=args.seed,
                   inpaint_seconds=round(seconds, 1), torch_threads=torch.get_num_threads())
    print(f"{n} digits of {reference}, lower 14 of 28 rows hidden; {results['scheduler']} "
          f"{args.num_inference_steps} steps, resample {args.resample}: {seconds:.0f} s to inpaint "
          f"({torch.get_num_threads()} threads)")
    print(f"| {'images':<22} | read as the true digit | read as the original image reads |")
    print(f"|{'-' * 24}|-----------------------:|---------------------------------:|")
    for name, pred in read.items():
        acc = (pred == labels).double().mean().item()
        same = (pred == read["original"]).double().mean().item()
        se = math.sqrt(acc * (1 - acc) / n)
        results[name] = dict(accuracy=acc, accuracy_se=se, agrees_with_original=same)
        print(f"| {labels_of[name]:<22} | {f'{acc:.1%} +- {se:.1%}':>22} | {same:>32.1%} |")
    if args.figure:
        k = min(6, n)
        fills = [filled[:k]] + [inpaint(pipe, images[:k], mask, args.num_inference_steps, seed=args.seed + s,
                                        resample=args.resample, show_progress=False) for s in (1, 2)]
        print(f"wrote {_save_figure(inpaint_figure(images[:k], mask, fills), args.figure)}")
    if args.output_json:  # with the command, the model's weights hashes, the machine and the date
        write_result(args.output_json, results,
                     inputs=[args.model, DEFAULT_CLASSIFIER_DIR / "model.safetensors"],
                     device=resolve_device(args.device))
    return results


if __name__ == "__main__":
    main()
