"""The real-data floor of the metrics, and how they react to damaged images, at large N.

    python benchmarks/metric_floor.py --dataset_name ../shared/data/mnist        # local copy of MNIST
    python benchmarks/metric_floor.py                                           # ylecun/mnist (needs internet)
    python benchmarks/metric_floor.py --dataset_name ../shared/data/mnist --sizes 100,300,1000,5000,10000 \
        --output_json benchmarks/results/metric_floor.json                     # the floors the docs quote

Part 1, the floor: FID(train[:n] vs the whole test set) for n = 1k, 5k, 10k. Both sides are *real* MNIST digits,
so this is the best score any generator can hope for at that n; it shrinks as n grows because FID's estimate of the
covariance is biased upwards at small n. A model whose FID is within a few times the floor at the same n is
producing digits the classifier cannot tell from real ones, on average.

Part 2, damage: the same train[:n] (largest n) with Gaussian pixel noise of sigma 0.1 / 0.2 / 0.4, a Gaussian blur
of 1 pixel, and pure uniform noise. Every metric should get worse in that order (noise), and pure noise should be
orders of magnitude away. Seeded; ~1-2 minutes on 2 CPU cores (feature extraction, KID subsets, k-NN distances).
"""

from __future__ import annotations

import argparse
import time

from sd_course.core.data import load_images
from sd_course.core.provenance import write_result
from sd_course.evaluate import metrics
from sd_course.evaluate.classifier import DEFAULT_CLASSIFIER_DIR

SHORT = {f"fid_{metrics.FEATURE_NAME}": "fid", f"kid_{metrics.FEATURE_NAME}_mean": "kid_mean",
         f"kid_{metrics.FEATURE_NAME}_std": "kid_std", f"precision_{metrics.FEATURE_NAME}": "precision",
         f"recall_{metrics.FEATURE_NAME}": "recall", f"mean_confidence_{metrics.FEATURE_NAME}": "confidence",
         f"classes_covered_{metrics.FEATURE_NAME}": "classes"}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset_name", default="ylecun/mnist", help="Hub id or local folder with train and test splits")
    p.add_argument("--sizes", default="1000,5000,10000", help="numbers of training images to score")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--kid_subsets", type=int, default=100)
    p.add_argument("--output_json", default=None)
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]

    start = time.time()
    classifier = metrics.load_feature_extractor()
    reference = metrics.prepare_reference(f"{args.dataset_name}:test", classifier)
    train, _ = load_images(f"{args.dataset_name}:train", num_images=max(sizes))
    print(f"reference: {reference.n} test digits (classifier accuracy {reference.accuracy:.4f}); "
          f"classifier sha256 {classifier.weights_sha256[:16]}...")

    rows = []

    def score(label, images):
        result = metrics.score_images(images, reference, classifier, seed=args.seed, kid_subsets=args.kid_subsets)
        rows.append(dict(case=label, n=len(images), **{short: result.get(key) for key, short in SHORT.items()}))
        print(_row(rows[-1]), flush=True)

    print(_header())
    for n in sizes:
        score(f"floor: train[:{n}]", train[:n])
    n = max(sizes)
    for sigma in (0.1, 0.2, 0.4):
        score(f"noise sigma {sigma}", metrics.add_gaussian_noise(train[:n], sigma, seed=args.seed))
    score("blur sigma 1px", metrics.gaussian_blur(train[:n], 1.0))
    score("pure noise", metrics.pure_noise(n, seed=args.seed))
    print(f"({time.time() - start:.0f} s; features: {metrics.FEATURE_NAME}, reference {args.dataset_name}:test)")
    if args.output_json:  # with the command, the classifier's hash, the machine and the date
        write_result(args.output_json, dict(dataset=args.dataset_name, rows=rows),
                     inputs=[DEFAULT_CLASSIFIER_DIR / "model.safetensors"])


def _header() -> str:
    return f"{'case':<22}{'n':>7}{'fid':>10}{'kid_mean':>13}{'kid_std':>11}{'precision':>10}{'recall':>8}" \
           f"{'confidence':>11}{'classes':>8}"


def _row(r: dict) -> str:
    return (f"{r['case']:<22}{r['n']:>7}{r['fid']:>10.3f}{r['kid_mean']:>13.4f}{r['kid_std']:>11.4f}"
            f"{r['precision']:>10.3f}{r['recall']:>8.3f}{r['confidence']:>11.3f}{r['classes']:>8}")


if __name__ == "__main__":
    main()
