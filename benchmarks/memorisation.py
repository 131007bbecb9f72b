"""Copies or new digits? How far each sample lies from its nearest training digit, against training-set size.

    python benchmarks/memorisation.py --run exact-16=analytic:mnist --num_samples 64        # seconds, no training
    python benchmarks/memorisation.py --run "unet-16=runs/memorise-16@builtin:mnist-2k:train[:16]" \\
        --run unet-60k=pipelines/ddpm-mnist --output runs/memorisation.png --output_json runs/memorisation.json

The measurement the docs quote: two runs of the same recipe that differ only in their data (the first 16 bundled
digits, or all 2,000 of them: the same 2,000 steps of 16 images, about 4 minutes each on 2 cores of an AMD EPYC
with bf16), then the shipped model (60,000 digits, no training) and the exact denoiser of 16 digits beside them
(the benchmark itself: about 3 minutes, most of it sampling the shipped model):

    accelerate launch --num_cpu_threads_per_process 2 training/train_unconditional.py \\
        --config training/configs/mnist-quick.yaml --max_train_samples 16 --train_batch_size 16 \\
        --max_train_steps 2000 --save_images_epochs 0 --save_model_epochs 0 --output_dir runs/memorise-16
    accelerate launch --num_cpu_threads_per_process 2 training/train_unconditional.py \\
        --config training/configs/mnist-quick.yaml --train_batch_size 16 \\
        --max_train_steps 2000 --save_images_epochs 0 --save_model_epochs 0 --output_dir runs/memorise-2k
    python benchmarks/memorisation.py --run exact-16=analytic:mnist \\
        --run "unet-16=runs/memorise-16@builtin:mnist-2k:train[:16]" \\
        --run "unet-2k=runs/memorise-2k@builtin:mnist-2k:train" \\
        --run "unet-60k=pipelines/ddpm-mnist@../shared/data/mnist:train" \\
        --inputs training/configs/mnist-quick.yaml \\
        --output docs/figures/memorisation.png --output_json benchmarks/results/memorisation.json

(16 digits at batch 16 are one step per epoch, so ``--max_train_steps`` sets the length: 2,000 epochs of one step,
32,000 images, as many as the 2,000-digit run sees in its 16 epochs of 125 steps.)

Each ``--run NAME=MODEL[@TRAIN_SET]`` names a pixel pipeline (a folder ``sd-course train`` wrote, the shipped
``pipelines/ddpm-mnist``, or ``analytic:mnist``) and the digits it was trained on, ``NAME_OR_PATH[:split][[:N]]``:
``[:N]`` keeps the first N rows, as ``--max_train_samples N`` does in training (``sd_course/core/data.py``), so
``builtin:mnist-2k:train[:16]`` is exactly the 16 digits such a run saw. Without ``@TRAIN_SET`` the training set is
read from the run's ``training_config.json`` (its dataset, split, ``max_train_samples``, resolution and resize
mode); ``analytic:mnist`` holds its own 16 digits (``named_denoiser`` in ``sd_course/pixel/analytic.py``). When both
are there and disagree, the benchmark says so. Quote an entry with ``[:N]`` (a shell may read the brackets as a
pattern).

For each run: ``--num_samples`` samples (DPM-Solver++, ``--num_inference_steps`` 25, ``--seed`` 0, the same starting
noise for every model), and for each sample the training digit at the smallest distance, measured as the per-pixel
root-mean-square difference of [0, 1] pixels (0: identical; one grey level everywhere: 1/255), found by a chunked
matrix product over the whole training set (60,000 digits in seconds), then recomputed exactly for the winner. The
reference is the same measure for ``--num_heldout`` real digits the model never saw (``--heldout``, default
``../shared/data/mnist:test`` when that folder exists, else the bundled digits; exact copies of a training digit are
never used): how far a new digit from the same distribution lies from this training set. Reported per run:

    sample_median, sample_p10       median and 10th percentile of the samples' nearest-training distances
    heldout_median, heldout_p10     the same for the held-out real digits
    median_ratio                    sample_median / heldout_median: ~1 if samples are as new as new real digits,
                                    << 1 if they are training digits again (> 1: further away than any real digit,
                                    which is bad images, not novelty: see the confidence)
    near_copy_threshold             the 1st percentile (--near_copy_quantile) of the held-out distances: only 1 new
                                    real digit in 100 comes this close to a training digit
    sample_near_copies              the share of samples below it (held-out digits: ~1% by construction)
    distinct_nearest                how many different training digits are nearest to some sample
    sample_confidence               the shipped classifier's mean confidence on the samples (are they digits?)

``--output``: for each run, ``--num_shown`` samples above the training digit nearest to each (with its distance),
and the two distributions of distances beside them (cumulative). ``--output_json``: the numbers with their provenance
(``sd_course/core/provenance.py``: the command, the hashes of the shipped U-Nets' weights, of the classifier and of
the ``--inputs``; a run in the git-ignored ``runs/`` exists on one machine only, so its recipe stands for it).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from sd_course.core.data import DEFAULT_DATASET, load_train_dataset, parse_dataset_spec
from sd_course.core.device import device_argument, resolve_device
from sd_course.core.errors import InputError, check_positive_int
from sd_course.core.plots import _new_figure, _save_figure, _show
from sd_course.core.provenance import describe_device, relative_to_root, write_result
from sd_course.evaluate.classifier import DEFAULT_CLASSIFIER_DIR, load_classifier, predict
from sd_course.evaluate.metrics import mean_confidence
from sd_course.pixel.pipeline import generate, load_pipeline

SHARED_MNIST_TEST = "../shared/data/mnist:test"
BUNDLED = "builtin:mnist-2k:train"
# The training sets of the analytic models that have one (sd_course.pixel.analytic.named_denoiser).
ANALYTIC_TRAIN_SETS = {"analytic:mnist": f"{BUNDLED}[:16]"}
NAME = re.compile(r"^[A-Za-z0-9_:-]+$")  # a run's name: a selector in a result link (rows.name=unet-16.median_ratio)
FIRST_N = re.compile(r"^(?P<spec>.+)\[:(?P<n>\d+)\]$")


# ----------------------------------------------------------------------------------------------------------------
# Runs and their training sets
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainSet:
    """``NAME_OR_PATH[:split][[:N]]``: a dataset, its split and (optionally) its first N rows."""

    dataset: str
    split: str = "train"
    first: int | None = None

    @classmethod
    def parse(cls, text: str) -> "TrainSet":
        text = text.strip()
        first = None
        m = FIRST_N.match(text)
        if m:
            text, first = m.group("spec"), int(m.group("n"))
            if first <= 0:
                raise InputError(f"the training set {text}[:{first}] keeps no digit; [:N] needs N >= 1")
        if not text or "[" in text or "]" in text:
            raise InputError(f"cannot read the training set {text!r}: write NAME_OR_PATH[:split][[:N]], e.g. "
                             f"{BUNDLED}[:16] (the first 16 rows, as --max_train_samples 16)")
        dataset, split = parse_dataset_spec(text, default_split="train")
        return cls(dataset, split, first)

    def __str__(self) -> str:
        return f"{self.dataset}:{self.split}" + (f"[:{self.first}]" if self.first else "")


@dataclass(frozen=True)
class Run:
    name: str
    model: str
    train_set: TrainSet
    resolution: int | None = None  # None: the model's sample_size
    resize_mode: str = "resize"


def recorded_train_set(model: str) -> tuple[TrainSet, int | None, str] | None:
    """The training set a model says it was trained on: ``analytic:mnist``'s own digits, or a run folder's
    ``training_config.json`` (dataset, split, max_train_samples; with its resolution and resize mode)."""
    if model in ANALYTIC_TRAIN_SETS:
        return TrainSet.parse(ANALYTIC_TRAIN_SETS[model]), None, "resize"
    config_file = Path(model).expanduser() / "training_config.json"
    if not config_file.is_file():
        return None
    config = json.loads(config_file.read_text())
    if config.get("train_data_dir"):
        raise InputError(f"{model} was trained on an image folder ({config['train_data_dir']}); name it as a dataset "
                         "after @ (NAME=MODEL@TRAIN_SET)")
    train_set = TrainSet(config.get("dataset_name") or DEFAULT_DATASET, config.get("split") or "train",
                         config.get("max_train_samples"))
    return train_set, config.get("resolution"), config.get("resize_mode") or "resize"


def parse_run(text: str) -> Run:
    """``NAME=MODEL[@TRAIN_SET]`` (``NAME=`` optional: the model folder's name) -> :class:`Run`."""
    name, sep, rest = text.partition("=")
    if not sep:
        name, rest = "", text
    model, at, spec = rest.partition("@")
    model = model.strip().rstrip("/")
    if not model:
        raise InputError(f"--run {text!r} names no model; write NAME=MODEL[@TRAIN_SET], e.g. "
                         f"unet-16=runs/memorise-16@{BUNDLED}[:16]")
    name = name.strip() or model.split("/")[-1]
    if not NAME.match(name):
        raise InputError(f"run name {name!r}: use letters, digits, '-', '_' or ':' (it becomes a key of the result)")
    recorded = recorded_train_set(model)
    if at:
        train_set = TrainSet.parse(spec)
        if recorded is not None and recorded[0] != train_set:
            print(f"note: {model} records its training set as {recorded[0]}; measuring against {train_set} as asked")
    elif recorded is None:
        missing = "is not a folder here" if not Path(model).expanduser().is_dir() else \
            "has no training_config.json to read its training set from"
        raise InputError(f"--run {text!r}: {model} {missing}; name a pipeline folder and its training set: "
                         f"{name}=MODEL@NAME_OR_PATH[:split][[:N]]")
    else:
        train_set = recorded[0]
    resolution, resize_mode = recorded[1:] if recorded is not None else (None, "resize")
    return Run(name, model, train_set, resolution, resize_mode)


def load_digits(train_set: TrainSet, resolution: int, resize_mode: str = "resize") -> torch.Tensor:
    """The digits of a training set as training read them (the same rows, size and resizing): uint8 (N, C, H, W)."""
    dataset, _ = load_train_dataset(train_set.dataset, split=train_set.split, resolution=resolution,
                                    resize_mode=resize_mode, max_train_samples=train_set.first, storage="memory",
                                    show_progress=False)
    return dataset.images


# ----------------------------------------------------------------------------------------------------------------
# The measure
# ----------------------------------------------------------------------------------------------------------------


def nearest_neighbours(queries: torch.Tensor, train: torch.Tensor, chunk: int = 8192) -> tuple[torch.Tensor,
                                                                                                 torch.Tensor]:
    """For each query image, the nearest training image: ``(distances (N,) float64, indices (N,) long)``.

    Images are uint8 (N, C, H, W) or floats in [0, 1]; the distance is the per-pixel RMS difference in [0, 1]
    units, ``sqrt(mean((a - b)^2))``. The search uses ``|a|^2 - 2 a.b + |b|^2`` over ``chunk`` training images at a
    time (float32 matrix products: no (N, M, D) tensor); the winner's distance is then recomputed directly in
    float64, so an exact copy is at distance 0, not at float rounding."""
    def flat(x):
        x = x.reshape(x.shape[0], -1)
        return x.double() / 255 if x.dtype == torch.uint8 else x.double()

    if len(train) == 0 or len(queries) == 0:
        raise InputError("nearest_neighbours needs at least one query and one training image")
    if queries.shape[1:] != train.shape[1:]:
        raise InputError(f"queries {tuple(queries.shape[1:])} and training images {tuple(train.shape[1:])} differ "
                         "in shape")
    q64 = flat(queries)
    q = q64.float()
    q_sq = q.pow(2).sum(1, keepdim=True)
    best = torch.full((len(q),), math.inf)
    index = torch.zeros(len(q), dtype=torch.long)
    for start in range(0, len(train), chunk):
        t = flat(train[start:start + chunk]).float()
        d2 = q_sq - 2 * q @ t.T + t.pow(2).sum(1)[None]
        value, i = d2.min(1)
        better = value < best
        best, index = torch.where(better, value, best), torch.where(better, i + start, index)
    exact = (q64 - flat(train[index])).pow(2).mean(1).sqrt()
    return exact, index


def heldout_digits(pool: torch.Tensor, train: torch.Tensor, num: int, seed: int) -> tuple[torch.Tensor,
                                                                                             torch.Tensor]:
    """``num`` digits of ``pool`` in a seeded random order, leaving out exact copies of a training digit (the
    bundled digits are MNIST training digits): ``(digits, their nearest-training distances)``."""
    order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))
    kept, distances = [], []
    for start in range(0, len(order), num):
        chosen = order[start:start + num]
        d, _ = nearest_neighbours(pool[chosen], train)
        new = d > 0
        kept.append(chosen[new])
        distances.append(d[new])
        if sum(len(k) for k in kept) >= num:
            break
    kept, distances = torch.cat(kept)[:num], torch.cat(distances)[:num]
    if len(kept) < 2:
        raise InputError(f"fewer than 2 held-out digits are left once the training digits are taken out of the pool "
                         f"({len(pool)} digits); pass --heldout with digits outside the training set, e.g. "
                         f"{SHARED_MNIST_TEST}")
    return pool[kept], distances


def statistics(distances: torch.Tensor, threshold: float) -> dict:
    d = distances.double()
    return dict(median=float(torch.quantile(d, 0.5)), p10=float(torch.quantile(d, 0.1)),
                near_copies=float((d < threshold).double().mean()))


def measure(run: Run, args, heldout_pool_spec: str, classifier, cache: dict) -> dict:
    """One run: sample, find the nearest training digits, compare with held-out digits. Returns the row and, under
    ``"_figure"``, what the figure needs."""
    pipe = load_pipeline(run.model, args.scheduler, device=args.device)
    resolution = run.resolution or int(pipe.unet.config.sample_size)
    key = (str(run.train_set), resolution, run.resize_mode)
    if key not in cache:
        cache[key] = load_digits(run.train_set, resolution, run.resize_mode)
    train = cache[key]
    start = time.time()
    samples = generate(pipe, args.num_samples, batch_size=args.batch_size, num_inference_steps=args.num_inference_steps,
                       seed=args.seed, show_progress=False)
    seconds = time.time() - start
    if samples.shape[1:] != train.shape[1:]:
        raise InputError(f"{run.model} draws {tuple(samples.shape[1:])} images but {run.train_set} holds "
                         f"{tuple(train.shape[1:])}; is it the right training set?")
    sample_d, sample_i = nearest_neighbours(samples, train)

    pool_key = (heldout_pool_spec, resolution, run.resize_mode)
    if pool_key not in cache:
        cache[pool_key] = load_digits(TrainSet.parse(heldout_pool_spec), resolution, run.resize_mode)
    heldout, heldout_d = heldout_digits(cache[pool_key], train, args.num_heldout, args.seed)
    threshold = float(torch.quantile(heldout_d.double(), args.near_copy_quantile))
    s, h = statistics(sample_d, threshold), statistics(heldout_d, threshold)

    confidence = {}
    if classifier is not None and tuple(samples.shape[1:]) == (1, 28, 28):
        confidence = dict(sample_confidence=mean_confidence(predict(classifier, samples)[1]),
                          heldout_confidence=mean_confidence(predict(classifier, heldout)[1]))
    row = dict(name=run.name, model=relative_to_root(run.model) if Path(run.model).exists() else run.model,
               train_set=str(run.train_set), train_images=len(train),
               heldout=f"{heldout_pool_spec} (exact copies of training digits left out)", heldout_images=len(heldout),
               sample_median=s["median"], sample_p10=s["p10"], heldout_median=h["median"], heldout_p10=h["p10"],
               median_ratio=s["median"] / h["median"], near_copy_threshold=threshold,
               sample_near_copies=s["near_copies"], heldout_near_copies=h["near_copies"],
               distinct_nearest=int(sample_i.unique().numel()), **confidence, seconds=round(seconds, 2))
    row = {k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()}
    row["_figure"] = dict(samples=samples[:args.num_shown], nearest=train[sample_i[:args.num_shown]],
                          shown_d=sample_d[:args.num_shown], sample_d=sample_d, heldout_d=heldout_d)
    return row


# ----------------------------------------------------------------------------------------------------------------
# The figure
# ----------------------------------------------------------------------------------------------------------------


def memorisation_figure(rows: list[dict], num_samples: int):
    """Per run: samples above their nearest training digits, and the cumulative distributions of the
    nearest-training distances of the samples and of held-out real digits (the near-copy threshold dashed; the two
    medians where each curve crosses 0.5)."""
    shown = max(len(r["_figure"]["samples"]) for r in rows)
    hist_cols = 4
    fig = _new_figure(1.05 * (shown + hist_cols) + 0.8, 2.75 * len(rows) + 0.3)
    blocks = fig.subfigures(len(rows), 1, squeeze=False)[:, 0]
    top = max(float(torch.cat([r["_figure"]["sample_d"], r["_figure"]["heldout_d"]]).max()) for r in rows)
    for block, row in zip(blocks, rows):
        data = row["_figure"]
        grid = block.add_gridspec(2, shown + hist_cols)
        for c in range(len(data["samples"])):
            above, below = block.add_subplot(grid[0, c]), block.add_subplot(grid[1, c])
            _show(above, data["samples"][c].float() / 127.5 - 1)  # uint8 -> the [-1, 1] range _show takes
            _show(below, data["nearest"][c].float() / 127.5 - 1)
            below.set_xlabel(f"{float(data['shown_d'][c]):.3f}", fontsize=8)
            if c == 0:
                above.set_ylabel("sample", fontsize=8.5)
                below.set_ylabel("nearest\ntraining digit", fontsize=8.5)
        ax = block.add_subplot(grid[:, shown:])
        ax.ecdf(data["heldout_d"].numpy(), color="tab:blue", label=f"{row['heldout_images']} new real digits")
        ax.ecdf(data["sample_d"].numpy(), color="tab:orange", label=f"{len(data['sample_d'])} samples")
        ax.axvline(row["near_copy_threshold"], color="k", ls="--", lw=1, label="near-copy threshold")
        ax.axhline(0.5, color="grey", lw=0.5)
        ax.set(xlim=(0, top * 1.02), ylim=(0, 1.01))
        ax.set_xlabel("distance to the nearest training digit\n(per-pixel RMS, pixels in [0, 1])", fontsize=8)
        ax.set_ylabel("share closer than this", fontsize=8)
        ax.tick_params(labelsize=7.5)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
        confidence = f", classifier confidence {row['sample_confidence']:.2f}" if "sample_confidence" in row else ""
        block.suptitle(f"{row['name']} ({row['model']}), {row['train_images']:,} training digits: median distance "
                       f"{row['median_ratio']:.2f}x that of new real digits, {row['sample_near_copies']:.0%} "
                       f"near-copies (new digits {row['heldout_near_copies']:.0%}),\n{row['distinct_nearest']} "
                       f"different training digits nearest to the {len(data['sample_d'])} samples{confidence}",
                       fontsize=9)
    fig.suptitle(f"Each sample above the training digit nearest to it (distance below): {num_samples} samples per "
                 "model, same seeds", fontsize=10)
    return fig


# ----------------------------------------------------------------------------------------------------------------
# The command
# ----------------------------------------------------------------------------------------------------------------


def shipped_weights(model: str) -> bool:
    """Whether a model's weights belong in the result's inputs: a pipeline folder of the checkout, outside the
    git-ignored ``runs/`` (a run trained there exists on one machine only; ``--inputs`` can name its recipe)."""
    where = relative_to_root(model)
    return (Path(model) / "unet").is_dir() and not Path(where).is_absolute() and not where.startswith("runs/")


def default_heldout() -> str:
    return SHARED_MNIST_TEST if Path(SHARED_MNIST_TEST.rsplit(":", 1)[0], "test.parquet").is_file() else BUNDLED


def format_table(rows: list[dict]) -> str:
    lines = [f"{'run':<12} {'training digits':>15} {'median':>7} {'p10':>7} {'new-digit':>9} {'ratio':>6} "
             f"{'near-copies':>11} {'(new)':>6} {'distinct':>8}"]
    for r in rows:
        lines.append(f"{r['name']:<12} {r['train_images']:>15,} {r['sample_median']:>7.4f} {r['sample_p10']:>7.4f} "
                     f"{r['heldout_median']:>9.4f} {r['median_ratio']:>6.2f} {r['sample_near_copies']:>11.0%} "
                     f"{r['heldout_near_copies']:>6.0%} {r['distinct_nearest']:>8}")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", action="append", required=True, metavar="NAME=MODEL[@TRAIN_SET]",
                   help="a pixel pipeline and the digits it was trained on, NAME_OR_PATH[:split][[:N]] (repeatable; "
                        "without @: read from the model's training_config.json)")
    p.add_argument("--heldout", default=None, help=f"real digits the models never saw (default: {SHARED_MNIST_TEST} "
                                                   f"if present, else {BUNDLED}); exact training digits are left out")
    p.add_argument("--num_samples", type=int, default=200)
    p.add_argument("--num_heldout", type=int, default=1000, help="held-out digits per run (they set the threshold)")
    p.add_argument("--near_copy_quantile", type=float, default=0.01,
                   help="a sample is a near-copy when it is closer to a training digit than this share of held-out "
                        "digits are")
    p.add_argument("--scheduler", default="dpm++")
    p.add_argument("--num_inference_steps", type=int, default=25)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch_size", type=int, default=100)
    p.add_argument("--num_shown", type=int, default=8, help="samples per run in the figure")
    p.add_argument("--no_classifier", action="store_true", help="skip the classifier's confidence")
    p.add_argument("--device", default="auto", type=device_argument)
    p.add_argument("--inputs", nargs="*", default=[], metavar="FILE",
                   help="more files the result depends on, hashed into its provenance (the recipe of runs trained "
                        "for it; the shipped pipelines' weights and the classifier are recorded anyway)")
    p.add_argument("--output", default="runs/memorisation.png")
    p.add_argument("--output_json", default="runs/memorisation.json")
    args = p.parse_args(argv)
    try:
        for name in ("num_samples", "num_heldout", "num_inference_steps", "batch_size", "num_shown"):
            check_positive_int(getattr(args, name), f"--{name}")
        if not 0 < args.near_copy_quantile < 1:
            raise InputError(f"--near_copy_quantile must be between 0 and 1, got {args.near_copy_quantile}")
        args.num_shown = min(args.num_shown, args.num_samples)
        runs = [parse_run(text) for text in args.run]
        if len({r.name for r in runs}) < len(runs):
            raise InputError(f"two runs share a name: {[r.name for r in runs]}; name each, NAME=MODEL")
        heldout = args.heldout or default_heldout()
        classifier = None if args.no_classifier else load_classifier()
        print(f"machine: {describe_device(resolve_device(args.device))}; held-out digits: {heldout}")
        cache, rows = {}, []
        for run in runs:
            rows.append(measure(run, args, heldout, classifier, cache))
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "_figure"}), flush=True)
    except InputError as e:
        raise SystemExit(f"error: {e}")
    print(format_table(rows))
    _save_figure(memorisation_figure(rows, args.num_samples), args.output)
    inputs = [str(Path(r.model) / "unet") for r in runs if shipped_weights(r.model)] + args.inputs
    if classifier is not None:
        inputs.append(str(DEFAULT_CLASSIFIER_DIR / "model.safetensors"))
    write_result(args.output_json, dict(
        distance="per-pixel RMS difference of [0, 1] pixels to the nearest training digit",
        near_copy=f"closer to a training digit than the {args.near_copy_quantile:.0%} quantile of the held-out "
                  "digits' distances",
        scheduler=args.scheduler, num_inference_steps=args.num_inference_steps, seed=args.seed,
        num_samples=args.num_samples, num_heldout=args.num_heldout, near_copy_quantile=args.near_copy_quantile,
        rows=[{k: v for k, v in r.items() if k != "_figure"} for r in rows]),
        inputs=inputs, device=resolve_device(args.device))
    print(f"wrote {args.output} and {args.output_json}")


if __name__ == "__main__":
    main()
