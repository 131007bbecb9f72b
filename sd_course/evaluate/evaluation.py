"""Evaluation, run on models: sample, score against real digits, compare models, score during training.

    sd-course evaluate --model pipelines/ddpm-mnist --reference ../shared/data/mnist:test --num_samples 1000
    sd-course evaluate --model pipelines/mini-sd-mnist --reference ../shared/data/mnist:test   # + prompt accuracy
    sd-course evaluate --samples my_gan_samples/ --reference ../shared/data/mnist:test
    sd-course compare runs/quick pipelines/ddpm-mnist --num_samples 500
    sd-course compare runs/mini-sd --num_samples 500 --guidance_scale 2      # + prompt accuracy per epoch

The metrics themselves (features, FID, KID, precision/recall, the class histogram) are sd_course/evaluate/metrics.py; this
file only decides what is sampled, with which seeds, and what is written: a JSON with every number and where it came
from (n, seed, scheduler, steps, the feature extractor's id and sha256).
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import matplotlib.ticker
import torch
from diffusers.utils import make_image_grid
from PIL import Image, ImageDraw, UnidentifiedImageError
from tqdm.auto import tqdm

from sd_course import __version__
from sd_course.core.data import channels_of, load_images
from sd_course.core.errors import InputError
from sd_course.core.device import resolve_device
from sd_course.core.options import SampleOptions
from sd_course.core.provenance import file_sha256, write_result
from sd_course.core.schedulers import check_steps_value, check_timestep_spacing, noise_schedule_of, scheduler_info
from sd_course.evaluate.classifier import DEFAULT_CLASSIFIER_DIR
from sd_course.evaluate.metrics import (
    DEFAULT_REFERENCE,
    FEATURE_NAME,
    IMAGE_SUFFIXES,
    KID_SUBSET_SIZE,
    KID_SUBSETS,
    NEAREST_K,
    build_inception_fid,
    check_same_kind,
    features_of,
    inception_fid,
    load_feature_extractor,
    prepare_reference,
    reference_summary,
    score_images,
)
from sd_course.gan.dcgan import DCGANGenerator
from sd_course.gan.dcgan import generate as generate_gan
from sd_course.kinds import kind_of
from sd_course.latent.guidance import generate_from_prompts, recommended_guidance
from sd_course.latent.latent_space import crop_to
from sd_course.latent.text import HELDOUT_TEMPLATES, TRAIN_TEMPLATES, caption
from sd_course.latent.text_to_image import load_text_to_image_pipeline
from sd_course.pixel.pipeline import generate, load_pipeline


# How `sd-course evaluate` and `sd-course compare` sample a text-to-image model unless told otherwise: DPM-Solver++
# 25 steps, so that a ladder's rows and an evaluation's metrics.json come from the same sampler.
TEXT_SCHEDULER, TEXT_STEPS = "dpm++", 25


def load_sample_folder(folder: str | Path, num_images: int | None = None) -> torch.Tensor:
    """A folder of image files (sorted by name) -> uint8 (N, C, H, W); grayscale stays 1 channel.

    An RGB file whose three channels are equal (how many GAN repos save digits) is read as grayscale.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"--samples {str(folder)!r} is not a folder; pass a folder of PNG images")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"--samples folder {str(folder)!r} holds no images ({'/'.join(IMAGE_SUFFIXES)}); "
                         "write the generated images there as PNG files, one image per file")
    if num_images is not None:
        files = files[:num_images]
    images = []
    for path in files:
        try:
            with Image.open(path) as image:
                image = image.convert("L" if channels_of(image.mode) == 1 else "RGB")
                array = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
                array = array.view(image.size[1], image.size[0], -1).permute(2, 0, 1)
        except (UnidentifiedImageError, OSError) as e:
            raise InputError(f"{path} could not be read as an image ({e}); remove or replace it") from e
        if array.shape[0] == 3 and torch.equal(array[0], array[1]) and torch.equal(array[1], array[2]):
            array = array[:1]
        images.append(array.contiguous())
    shapes = {tuple(a.shape) for a in images}
    if len(shapes) > 1:
        raise InputError(f"the images in {str(folder)!r} do not all have the same size and channels: {sorted(shapes)}; "
                         "resize them to one size")
    return torch.stack(images)


def _generate(model_or_pipe, num_samples: int, seed: int, scheduler: str | None, num_inference_steps: int | None,
              batch_size: int, eta: float | None, show_progress: bool):
    """Sample from a pipeline folder (or a loaded pipeline); returns (uint8 images, what sampled them: the scheduler's
    class, its ``--scheduler`` name (two share DPMSolverMultistepScheduler: ``dpm++`` and ``dpm++-2m-sde``), its
    steps and its ``timestep_spacing``)."""
    pipe = load_pipeline(str(model_or_pipe), scheduler) if isinstance(model_or_pipe, (str, Path)) else model_or_pipe
    kwargs = dict(eta=eta) if eta is not None else {}
    images = generate(pipe, num_samples, batch_size=batch_size, num_inference_steps=num_inference_steps, seed=seed,
                      show_progress=show_progress, **kwargs)
    return images, sampler_info(pipe, num_inference_steps)


def sampler_info(loaded, num_inference_steps: int | None = None) -> dict:
    """What sampled the images: the scheduler's class, its ``--scheduler`` name (two share
    DPMSolverMultistepScheduler: ``dpm++`` and ``dpm++-2m-sde``), its steps and its ``timestep_spacing``; a model
    without a scheduler (the GAN) made each image in one call."""
    scheduler = getattr(loaded, "scheduler", None)
    if scheduler is None:
        return dict(scheduler=None, sampler=None, num_inference_steps=1)
    # Record what actually ran: every diffusers scheduler keeps the step count of its last set_timesteps call.
    steps = getattr(scheduler, "num_inference_steps", None) or num_inference_steps
    info = scheduler_info(scheduler)
    return dict(scheduler=type(scheduler).__name__, sampler=info.alias if info else None, num_inference_steps=steps,
                timestep_spacing=scheduler.config.get("timestep_spacing"))


def pipeline_image_shape(pipe) -> tuple:
    """(C, H, W) of the images a pipeline makes, read from its U-Net's config (no sampling needed)."""
    config = pipe.unet.config
    size = config.sample_size if isinstance(config.sample_size, int) else tuple(config.sample_size)[0]
    return config.out_channels, size, size


def _check_counts(num_samples: int | None, kid_subset_size: int | None) -> None:
    if num_samples is not None and num_samples < 2:
        raise InputError(f"--num_samples must be at least 2, got {num_samples}")
    if kid_subset_size is not None and num_samples is not None and kid_subset_size > num_samples:
        raise InputError(f"too few samples for KID's subset size: --num_samples {num_samples} < --kid_subset_size "
                         f"{kid_subset_size}; pass --num_samples >= {kid_subset_size} or a smaller --kid_subset_size")


def evaluate(model: str | None = None, samples: str | None = None, reference: str = DEFAULT_REFERENCE,
             num_samples: int | None = None, seed: int = 0, scheduler: str | None = None,
             num_inference_steps: int | None = None, eta: float | None = None, batch_size: int = 250,
             num_reference: int | None = None, kid_subset_size: int | None = None, kid_subsets: int = KID_SUBSETS,
             nearest_k: int = NEAREST_K, classifier: str | None = None, inception_fid_: bool = False,
             inception_weights: str | None = None, output_json: str | None = None, show_progress: bool = True,
             print_table: bool = True, guidance_scale: float | None = None, floor: str | None = None,
             timestep_spacing: str | None = None, device: str = "auto") -> dict:
    """Score a pipeline folder (``model``; ``num_samples`` default 1000) or a folder of images (``samples``).
    A text-to-image pipeline is asked for each digit in turn and also scored on prompt accuracy. ``floor``: real
    images (``NAME_OR_PATH:split``, e.g. the training split when ``reference`` is the test split) scored exactly like
    the samples, as ``result["floor"]``: the best score any generator can reach at this n. ``timestep_spacing``:
    place the sampler's steps so (default: as the pipeline's scheduler config says). ``device``: where the pipeline
    samples (``"auto"``: the GPU when there is one). ``guidance_scale``: a text-to-image model's (default: the one
    its card recommends, ``sd_course/latent/guidance.py``)."""
    if (model is None) == (samples is None):
        raise InputError("give exactly one of --model (a pipeline folder) or --samples (a folder of PNG images)")
    _check_counts(num_samples, kid_subset_size)
    check_steps_value(num_inference_steps)
    check_timestep_spacing(timestep_spacing)
    start = time.time()
    kind = kind_of(model) if model is not None else None
    if kind is not None and "prompt" in kind.options:  # a text-to-image model: each digit asked for in turn
        if floor is not None:
            raise InputError("--floor is for unconditional models and sample folders; a text-to-image model's "
                             "floor is that of `sd-course evaluate --samples` on real digits")
        if timestep_spacing is not None:
            raise InputError("--timestep_spacing is for unconditional pipelines; a text-to-image model samples "
                             "with the spacing of its own scheduler config")
        result = evaluate_text_to_image(model, reference, num_samples or 1000, seed, scheduler or TEXT_SCHEDULER,
                                        num_inference_steps, guidance_scale, batch_size, num_reference, classifier,
                                        show_progress, device)
        result.update(sd_course_version=__version__, seconds=round(time.time() - start, 1))
        if print_table:
            print(format_metrics(result))
            print(f"prompt accuracy: {result['prompt_accuracy']:.3f} (training phrasings), "
                  f"{result['prompt_accuracy_heldout']:.3f} (held-out phrasings), guidance "
                  f"{result['guidance_scale']:g}" + (" (the model card's, or the default)" if guidance_scale is None
                                                     else ""))
        if output_json:
            write_metrics(output_json, result, model, device, classifier)
        return result
    extractor = load_feature_extractor(classifier)
    inception = build_inception_fid(inception_weights) if inception_fid_ or inception_weights else None
    # The cheap checks first: the user's folder or model, then the reference against them, then the sampling.
    if samples is not None:
        images = load_sample_folder(samples, num_samples)
        shape, what = tuple(images.shape[1:]), f"images in {samples!r}"
    else:
        options = SampleOptions(scheduler=scheduler, num_inference_steps=num_inference_steps, eta=eta,
                                timestep_spacing=timestep_spacing, seed=seed, batch_size=batch_size, device=device)
        if kind.sample is None:
            raise InputError(f"{model} is {kind.description}: there is nothing to sample and score; pass a pipeline "
                             "folder, or its samples with --samples")
        kind.check_options(options, model)
        loaded = kind.load(model, options)
        shape, what = kind.image_shape(loaded), f"samples of {model!r}"
    ref = prepare_reference(reference, extractor, num_reference, keep_images=inception is not None,
                            show_progress=show_progress, sample_shape=shape, what=what)
    info = dict(source="samples" if samples is not None else "model", model=model, samples=samples, seed=seed)
    if samples is not None:
        info.update(scheduler=None, num_inference_steps=None)
    else:
        images = kind.sample(loaded, num_samples or 1000, options, show_progress=show_progress)
        info.update(sampler_info(loaded, num_inference_steps))
        info["eta"] = eta
        info["device"] = loaded.device.type  # where the samples were drawn (float rounding differs between devices)
    result = score_images(images, ref, extractor, seed, kid_subset_size, kid_subsets, nearest_k, show_progress)
    if inception is not None:
        result["fid_inception"] = inception_fid(images, ref.images, inception, show_progress=show_progress)
    if floor is not None:
        result["floor"] = real_data_floor(floor, len(images), ref, extractor, seed, kid_subset_size, kid_subsets,
                                          nearest_k)
    result.update(info)
    result.update(reference_summary(ref, extractor))
    result.update(sd_course_version=__version__, seconds=round(time.time() - start, 1))
    if print_table:
        print(format_metrics(result))
    if output_json:
        write_metrics(output_json, result, model or samples, device, classifier)
    return result


def write_metrics(output_json: str, result: dict, measured: str | None, device: str,
                  classifier: str | None = None) -> None:
    """The scores with their provenance (``sd_course/core/provenance.py``): this command, the hashes of the model's
    weights (or sample images) and of the classifier whose features every metric uses, the device and the date."""
    inputs = [classifier or str(DEFAULT_CLASSIFIER_DIR)]
    if measured and Path(measured).exists():
        inputs.append(measured)
    write_result(output_json, result, inputs=inputs, device=resolve_device(device))
    print(f"wrote {output_json}")


FLOOR_METRICS = (f"fid_{FEATURE_NAME}", f"kid_{FEATURE_NAME}_mean", f"kid_{FEATURE_NAME}_std",
                 f"precision_{FEATURE_NAME}", f"recall_{FEATURE_NAME}")


def real_data_floor(spec: str, n: int, ref, extractor, seed: int = 0, kid_subset_size: int | None = None,
                    kid_subsets: int = KID_SUBSETS, nearest_k: int = NEAREST_K) -> dict:
    """The metrics' floor at this n: the first ``n`` real images of ``spec`` scored exactly like ``n`` samples.

    FID's estimate is biased upwards at small n (the covariance of n points), so even real digits score well above
    0: at n = 1,000, MNIST train[:1000] against the test set scores 6.9 (benchmarks/metric_floor.py). A model is
    judged by how many times its floor it scores, at the same n."""
    real, _ = load_images(spec, resolution=ref.image_shape[-1], num_images=n, show_progress=False)
    if len(real) < n:
        raise InputError(f"--floor {spec!r} holds {len(real)} images, fewer than the {n} samples scored; pass a "
                         "larger split (e.g. the training split) or fewer --num_samples")
    scores = score_images(real, ref, extractor, seed, kid_subset_size, kid_subsets, nearest_k)
    return {"spec": spec, "n": n, **{k: scores[k] for k in FLOOR_METRICS if k in scores}}


def generate_digits_from_prompts(pipe, num_samples: int, templates, seed: int = 0, num_inference_steps: int = 25,
                                 guidance_scale: float = 4.0, batch_size: int = 250, show_progress: bool = True):
    """``num_samples`` images of a text-to-image pipeline, digit ``i % 10`` asked for by caption template
    ``(i // 10) % len(templates)``; returns (uint8 images cropped to 28x28, the digits asked for)."""
    digits = torch.arange(num_samples) % 10
    prompts = [caption(int(d), templates[(i // 10) % len(templates)]) for i, d in enumerate(digits)]
    images = generate_from_prompts(pipe, prompts, 1, num_inference_steps, guidance_scale, seed=seed,
                                   batch_size=batch_size, show_progress=show_progress)
    return crop_to(images, 28), digits


def prompt_accuracy(probs: torch.Tensor, digits: torch.Tensor) -> dict:
    """The share of images the classifier reads as the digit the prompt asked for, overall and per digit."""
    hit = probs.argmax(-1) == digits
    return {"prompt_accuracy": hit.double().mean().item(),
            "prompt_accuracy_per_digit": [hit[digits == d].double().mean().item() for d in range(10)]}


def evaluate_text_to_image(model: str, reference: str = DEFAULT_REFERENCE, num_samples: int = 1000, seed: int = 0,
                           scheduler: str | None = TEXT_SCHEDULER, num_inference_steps: int | None = TEXT_STEPS,
                           guidance_scale: float | None = None, batch_size: int = 250,
                           num_reference: int | None = None, classifier: str | None = None,
                           show_progress: bool = True, device: str = "auto") -> dict:
    """A text-to-image pipeline: prompt accuracy on the training phrasings and on held-out ones, and the usual
    FID / KID / precision / recall of the training-phrasing samples (all ten digits, equally many), guided by
    ``guidance_scale`` (default: the one the model's card recommends), sampled on ``device`` (``"auto"``: the GPU
    when there is one; the starting noise is drawn on the CPU, so the images agree across devices up to rounding)."""
    pipe = load_text_to_image_pipeline(model, scheduler).to(resolve_device(device))
    guidance_scale = guidance_scale if guidance_scale is not None else recommended_guidance(model)
    steps = num_inference_steps or TEXT_STEPS
    extractor = load_feature_extractor(classifier)
    ref = prepare_reference(reference, extractor, num_reference, show_progress=show_progress,
                            sample_shape=(pipe.vae.config.out_channels, 28, 28), what=f"samples of {model!r}")
    result = {}
    for name, templates in (("train_templates", TRAIN_TEMPLATES), ("heldout_templates", HELDOUT_TEMPLATES)):
        images, digits = generate_digits_from_prompts(pipe, num_samples, templates, seed, steps, guidance_scale,
                                                      batch_size, show_progress)
        _, probs = features_of(images, extractor)
        result[name] = prompt_accuracy(probs, digits)
        if name == "train_templates":
            result.update(score_images(images, ref, extractor, seed, show_progress=show_progress))
    result["prompt_accuracy"] = result["train_templates"]["prompt_accuracy"]
    result["prompt_accuracy_heldout"] = result["heldout_templates"]["prompt_accuracy"]
    result.update(model=model, scheduler=scheduler, num_inference_steps=steps, guidance_scale=guidance_scale,
                  seed=seed, device=pipe.device.type, **reference_summary(ref, extractor))
    return result


TABLE_METRICS = (f"fid_{FEATURE_NAME}", f"kid_{FEATURE_NAME}_mean", f"kid_{FEATURE_NAME}_std",
                 f"precision_{FEATURE_NAME}", f"recall_{FEATURE_NAME}", f"mean_confidence_{FEATURE_NAME}",
                 f"classes_covered_{FEATURE_NAME}", f"class_histogram_tv_{FEATURE_NAME}", "fid_inception")


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    if isinstance(value, list):
        return " ".join(f"{v:.2f}" for v in value)
    return str(value)


def format_metrics(result: dict) -> str:
    """One result as a two-column table (metric, value), then what it was computed from."""
    rows = [(k, _fmt(result[k])) for k in TABLE_METRICS if k in result]
    if f"class_histogram_{FEATURE_NAME}" in result:
        rows.append(("class histogram 0..9", _fmt(result[f"class_histogram_{FEATURE_NAME}"])))
        rows.append(("reference histogram", _fmt(result["reference_class_histogram"])))
    floor = result.get("floor") or {}
    rows += [(f"floor: {k}", _fmt(floor[k])) for k in FLOOR_METRICS if k in floor]
    if floor:
        rows.append(("floor: real images", f"{floor['n']} of {floor['spec']}"))
    for key in ("n", "seed", "scheduler", "sampler", "num_inference_steps", "reference", "reference_n",
                "feature_extractor"):
        if result.get(key) is not None:
            rows.append((key, _fmt(result[key])))
    rows.append(("feature_extractor_sha256", result["feature_extractor_sha256"][:16] + "..."))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def format_table(results: list[dict], labels: list[str]) -> str:
    """Several results as one table: a row per model, a column per metric."""
    columns = [k for k in TABLE_METRICS + ("prompt_accuracy",) if any(k in r for r in results)]
    short = [c.replace(f"_{FEATURE_NAME}", "") for c in columns]
    cells = [[label] + [_fmt(r.get(c, "")) for c in columns] for label, r in zip(labels, results)]
    header = ["model"] + short
    widths = [max(len(str(row[i])) for row in [header] + cells) for i in range(len(header))]
    lines = ["  ".join(f"{str(v):<{w}}" for v, w in zip(row, widths)) for row in [header] + cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    note = f"(features: {FEATURE_NAME}; lower FID/KID is better, higher precision/recall is better)"
    return "\n".join(lines) + "\n" + note


# ---- compare -----------------------------------------------------------------------------------------------------

EPOCH_RE = re.compile(r"^epoch-(\d+)$")


@dataclass
class Entry:
    """One column of a comparison: a pipeline folder (maybe an epoch snapshot of a run) or a folder of images."""

    label: str
    path: Path
    kind: str  # "model" (an unconditional pipeline), "text-to-image" (asked for each digit in turn) or "samples"
    run: str | None = None  # the training run an epoch snapshot belongs to
    epoch: int | None = None
    step: int | None = None  # optimisation steps behind it, when the run's logs say
    train_minutes: float | None = None  # minutes of optimisation steps behind it (CPU- or GPU-minutes of the run)


def training_progress(path: Path, run: Path | None = None, epoch: int | None = None) -> dict:
    """How much training is behind a pipeline: {epoch, step, train_minutes, run}, from what the run wrote.

    An ``epoch-XXXX/`` snapshot of ``run`` reads the run's ``logs/loss.jsonl`` (its last step of epoch N; loss
    records count epochs from 0); an exported pipeline reads its own ``train_summary.json`` and names its run by the
    ``output_dir`` of its ``training_config.json``, so the shipped rungs of one ladder plot as one line."""
    if run is not None and epoch is not None:
        log = run / "logs" / "loss.jsonl"
        last = None
        if log.is_file():
            for line in log.read_text().splitlines():
                record = json.loads(line) if line.strip() else None
                if record and int(record["epoch"]) < epoch:
                    last = record
        return dict(epoch=epoch, step=last and last.get("step"),
                    train_minutes=last and last.get("train_seconds") and last["train_seconds"] / 60)
    summary_path, config_path = path / "train_summary.json", path / "training_config.json"
    if not summary_path.is_file():
        return {}
    summary = json.loads(summary_path.read_text())
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    seconds = summary.get("train_seconds")
    return dict(epoch=summary.get("epochs"), step=summary.get("global_step"),
                train_minutes=seconds / 60 if seconds else None, run=config.get("output_dir"))


def _unet_hash(folder: Path) -> str | None:
    files = sorted((folder / "unet").glob("*.safetensors"))
    return file_sha256(files[0]) if files else None


def _pipeline_kind(folder: Path) -> str:
    """An entry's kind for a pipeline folder: "text-to-image" for a model that takes a prompt, else "model"."""
    return "text-to-image" if "prompt" in kind_of(str(folder)).options else "model"


def expand_entries(paths: list[str]) -> list[Entry]:
    """Each argument -> entries: a run folder with ``epoch-XXXX/`` snapshots -> every snapshot (and its final
    pipeline when it differs from the last snapshot); a pipeline folder -> itself (an unconditional or a
    text-to-image model); a folder of images -> samples."""
    entries = []
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            raise InputError(f"{raw!r} is not a folder; pass pipeline folders, training runs or folders of PNG images")
        epochs = sorted((int(m.group(1)), p) for p in path.iterdir()
                        if p.is_dir() and (m := EPOCH_RE.match(p.name)) and (p / "model_index.json").is_file())
        for epoch, snapshot in epochs:
            progress = training_progress(snapshot, path, epoch)
            entries.append(Entry(f"{raw.rstrip('/')}/{snapshot.name}", snapshot, _pipeline_kind(snapshot), raw, epoch,
                                 progress["step"], progress["train_minutes"]))
        if (path / "model_index.json").is_file():
            if not epochs or _unet_hash(path) != _unet_hash(epochs[-1][1]):
                progress = training_progress(path)
                entries.append(Entry(raw, path, _pipeline_kind(path), progress.get("run"), progress.get("epoch"),
                                     progress.get("step"), progress.get("train_minutes")))
        elif not epochs:
            if not any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir()):
                raise InputError(f"{raw!r} is neither a pipeline folder (model_index.json), a training run "
                                 "(epoch-XXXX/ snapshots) nor a folder of images")
            entries.append(Entry(raw, path, "samples"))
    return entries


def upscale(images_uint8: torch.Tensor, factor: int):
    """uint8 (N, C, H, W) -> list of PIL images, each pixel a factor x factor block (no smoothing of the digits)."""
    out = []
    for image in images_uint8:
        array = image.permute(1, 2, 0).squeeze(-1).numpy()
        pil = Image.fromarray(array, mode="L" if array.ndim == 2 else "RGB").convert("RGB")
        out.append(pil.resize((pil.width * factor, pil.height * factor), Image.NEAREST))
    return out


def comparison_grid(image_sets: list[torch.Tensor], labels: list[str], columns: int = 8, factor: int = 4):
    """A row per model, the same sample indices (hence the same seeds) in every column; labels on the left."""
    tiles = [tile for images in image_sets for tile in upscale(images[:columns], factor)]
    grid = make_image_grid(tiles, rows=len(image_sets), cols=columns)
    margin = 8 + 7 * max(len(label) for label in labels)
    canvas = Image.new("RGB", (grid.width + margin, grid.height), "white")
    canvas.paste(grid, (margin, 0))
    draw, row_height = ImageDraw.Draw(canvas), grid.height // len(image_sets)
    for i, label in enumerate(labels):
        draw.text((4, i * row_height + row_height // 2 - 5), label, fill="black")
    return canvas


def plot_metrics_vs_epoch(entries: list[Entry], results: list[dict], output: str | Path,
                          floor: dict | None = None) -> Path:
    """The epoch ladder: FID against epochs and against training minutes, precision / recall (and a text-to-image
    run's prompt accuracy) against epochs; one line per training run (snapshots of a run folder, or exported
    pipelines of the same run)."""
    matplotlib.use("Agg")
    fig, (ax_fid, ax_min, ax_pr) = plt.subplots(1, 3, figsize=(15, 4))
    runs = sorted({e.run or "" for e in entries if e.epoch is not None})
    fid = f"fid_{FEATURE_NAME}"
    for run in runs:
        points = sorted(((e.epoch, e.train_minutes, r) for e, r in zip(entries, results)
                         if (e.run or "") == run and e.epoch is not None), key=lambda p: p[0])
        label = run or "pipelines"
        ax_fid.plot([p[0] for p in points], [p[2][fid] for p in points], "o-", label=label)
        timed = [p for p in points if p[1] is not None]
        if timed:
            ax_min.plot([p[1] for p in timed], [p[2][fid] for p in timed], "o-", label=label)
        ax_pr.plot([p[0] for p in points], [p[2][f"precision_{FEATURE_NAME}"] for p in points], "o-",
                   label=f"{label} precision")
        ax_pr.plot([p[0] for p in points], [p[2][f"recall_{FEATURE_NAME}"] for p in points], "s--",
                   label=f"{label} recall")
        prompted = [p for p in points if p[2].get("prompt_accuracy") is not None]
        if prompted:
            ax_pr.plot([p[0] for p in prompted], [p[2]["prompt_accuracy"] for p in prompted], "^:",
                       label=f"{label} prompt accuracy (guidance {prompted[0][2]['guidance_scale']:g})")
    if floor is not None:  # the best any generator can score at this n: where the curves are heading
        for ax in (ax_fid, ax_min):
            ax.axhline(floor[fid], color="grey", linestyle=":", label=f"real data ({floor['n']} images)")
    ax_fid.set(xlabel="epoch", ylabel=f"{fid} (lower is better)", yscale="log")
    ax_min.set(xlabel="minutes of training (the run's own hardware)", ylabel=fid, yscale="log")
    prompted = any(r.get("prompt_accuracy") is not None for r in results)
    ax_pr.set(xlabel="epoch", ylabel="precision / recall (k=3)" + (" / prompt accuracy" if prompted else ""),
              ylim=(0, 1.02))
    for ax in (ax_fid, ax_min, ax_pr):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    for ax in (ax_fid, ax_pr):
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    fig.suptitle(f"n = {results[0]['n']} samples, seed {results[0]['seed']}")
    fig.tight_layout()
    fig.savefig(output, dpi=120)
    plt.close(fig)
    return Path(output)


# What a reused row of compare.json does not carry over: which entry it is and what sampled it (set anew).
ENTRY_KEYS = ("model", "epoch", "step", "train_minutes", "run", "seed", "scheduler", "sampler",
              "num_inference_steps", "timestep_spacing", "eta", "guidance_scale", "unet_sha256", "reused_from")


def same_sampler(row: dict, sampler: dict, eta) -> bool:
    """Did an earlier row come from this sampler (class, name, steps, spacing, eta; for a text-to-image model also
    the guidance scale, which ``sampler`` then holds)? Rows written before the name was recorded give only the class,
    which then meant its first ``--scheduler`` name (DPMSolverMultistepScheduler: ``dpm++``, the ODE;
    ``dpm++-2m-sde`` did not exist)."""
    if "sampler" not in row:
        info = scheduler_info(row.get("scheduler") or "")
        row = dict(row, sampler=info.alias if info else None)
    return all(row.get(key) == value for key, value in dict(sampler, eta=eta).items())


def reusable_rows(path: str | Path, reference: dict, scoring: dict) -> dict[str, dict]:
    """The rows of an earlier ``compare.json`` that may stand for new ones, by U-Net sha256: scored against the same
    reference with the same feature extractor and the same ``scoring`` settings (n, seed, KID subsets, k); the
    sampler is checked per model."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--reuse {str(path)!r}: no such file; pass the compare.json of an earlier `sd-course compare`")
    try:
        earlier = json.loads(path.read_text())
        rows = earlier["results"]
    except (ValueError, KeyError, TypeError) as error:
        raise InputError(f"--reuse {str(path)!r} is not a compare.json written by `sd-course compare` ({error})")
    for key in ("reference", "reference_n", "feature_extractor_sha256"):
        if earlier.get(key) != reference[key]:
            raise InputError(f"--reuse {str(path)!r} was scored with {key}={earlier.get(key)!r}, this comparison "
                             f"with {reference[key]!r}; its scores are not comparable: drop --reuse or match "
                             "--reference, --num_reference and --classifier")
    return {row["unet_sha256"]: row for row in rows
            if row.get("unet_sha256") and all(row.get(key) == value for key, value in scoring.items())}


def _sample_entry(entry: Entry, pipe, num_samples: int, seed: int, scheduler: str | None,
                  num_inference_steps: int | None, batch_size: int, eta: float | None, guidance_scale: float,
                  show_progress: bool):
    """One model's samples for ``compare``: (uint8 images, what sampled them, the digits asked for or None). A
    text-to-image model is asked for digit ``i % 10`` in the training phrasings, as ``sd-course evaluate`` asks
    (DPM-Solver++ 25 steps unless told otherwise), and its guidance scale is part of what sampled it."""
    if entry.kind != "text-to-image":
        images, sampler = _generate(pipe, num_samples, seed, scheduler, num_inference_steps, batch_size, eta,
                                    show_progress)
        return images, sampler, None
    steps = num_inference_steps or TEXT_STEPS
    images, digits = generate_digits_from_prompts(pipe, num_samples, TRAIN_TEMPLATES, seed, steps, guidance_scale,
                                                  batch_size, show_progress)
    return images, dict(sampler_info(pipe, steps), guidance_scale=guidance_scale), digits


def compare(models: list[str], num_samples: int = 500, seed: int = 0, reference: str = DEFAULT_REFERENCE,
            scheduler: str | None = None, num_inference_steps: int | None = None, eta: float | None = None,
            batch_size: int = 250, num_reference: int | None = None, kid_subset_size: int | None = None,
            kid_subsets: int = KID_SUBSETS, classifier: str | None = None, output_dir: str = "compare",
            grid_columns: int = 8, show_progress: bool = True, floor: str | None = None,
            reuse: str | None = None, timestep_spacing: str | None = None, device: str = "auto",
            guidance_scale: float | None = None) -> list[dict]:
    """Score several models with the same seeds; write ``compare.json``, ``compare_grid.png`` and, for training
    runs with ``epoch-XXXX/`` snapshots, ``metrics_vs_epoch.png``. Returns one result dict per entry. ``floor``:
    real images scored the same way once (``real_data_floor``), in ``compare.json`` and drawn in the plot.
    ``reuse``: an earlier ``compare.json``; a model whose U-Net weights (sha256), sampler, n and seed match one of
    its rows keeps that row's scores and is sampled only for the grid (a continued run re-scores its new epochs only).
    ``timestep_spacing``: one spacing for every model's sampler (default: each pipeline's own config). ``device``:
    where the pipelines sample (``"auto"``: the GPU when there is one).

    A text-to-image model (or run) is sampled as ``sd-course evaluate`` samples it: digit ``i % 10`` asked for in
    the training phrasings, cropped to 28x28, with ``guidance_scale`` (default: the one its card recommends, else 2:
    ``recommended_guidance``) and, unless
    told otherwise, DPM-Solver++ 25 steps; its rows add ``guidance_scale`` and ``prompt_accuracy``. Unconditional
    models ignore ``guidance_scale``."""
    if not models:
        raise InputError("give at least one model: sd-course compare MODEL [MODEL ...]")
    if guidance_scale is not None and guidance_scale < 1:
        raise InputError(f"--guidance_scale {guidance_scale} is below 1: 1 means no guidance (the conditional model "
                         "alone), larger values follow the prompt more closely (try 2-5)")
    _check_counts(num_samples, kid_subset_size)
    check_steps_value(num_inference_steps)
    check_timestep_spacing(timestep_spacing)
    entries = expand_entries(models)
    text_models = [e.label for e in entries if e.kind == "text-to-image"]
    refused = [f"--{name}" for name, value in (("eta", eta), ("timestep_spacing", timestep_spacing))
               if value is not None]
    if text_models and refused:
        raise InputError(f"{text_models[0]} is a text-to-image model, which samples with the spacing of its own "
                         f"scheduler config and no DDIM eta; drop {' and '.join(refused)}, or compare it apart")
    extractor = load_feature_extractor(classifier)
    ref = prepare_reference(reference, extractor, num_reference, show_progress=show_progress)
    floor_scores = real_data_floor(floor, num_samples, ref, extractor, seed, kid_subset_size, kid_subsets) \
        if floor is not None else None
    scoring = dict(n=num_samples, seed=seed, kid_subsets=kid_subsets, nearest_k=NEAREST_K,
                   kid_subset_size=kid_subset_size or min(KID_SUBSET_SIZE, num_samples, ref.n))
    previous = reusable_rows(reuse, reference_summary(ref, extractor), scoring) if reuse else {}
    results, image_sets, reused = [], [], 0
    for entry in tqdm(entries, desc="models", disable=not show_progress or len(entries) == 1):
        result, weights, digits, guidance = None, {}, None, None
        if entry.kind == "samples":
            images = load_sample_folder(entry.path, num_samples)
            sampler = dict(scheduler=None, sampler=None, num_inference_steps=None)
            check_same_kind(tuple(images.shape[1:]), ref.image_shape, ref.spec, f"images of {entry.label!r}")
        else:
            if entry.kind == "text-to-image":
                pipe = load_text_to_image_pipeline(str(entry.path), scheduler or TEXT_SCHEDULER)
                pipe = pipe.to(resolve_device(device))
                shape = (pipe.vae.config.out_channels, 28, 28)  # its samples are cropped to MNIST's 28x28
                guidance = guidance_scale if guidance_scale is not None else recommended_guidance(entry.path)
            else:
                pipe = load_pipeline(str(entry.path), scheduler, timestep_spacing, device)
                shape = pipeline_image_shape(pipe)
            check_same_kind(shape, ref.image_shape, ref.spec, f"samples of {entry.label!r}")
            weights = dict(unet_sha256=_unet_hash(entry.path))
            row = previous.get(weights["unet_sha256"])
            if row is not None:  # scored before: sample the grid's images only (image i has its own seed), and
                # keep the old scores if these images came from the same sampler
                images, sampler, _ = _sample_entry(entry, pipe, min(grid_columns, num_samples), seed, scheduler,
                                                   num_inference_steps, batch_size, eta, guidance, False)
                if same_sampler(row, sampler, eta):
                    result = {key: value for key, value in row.items() if key not in ENTRY_KEYS}
                    result["reused_from"], reused = str(reuse), reused + 1
            if result is None:
                images, sampler, digits = _sample_entry(entry, pipe, num_samples, seed, scheduler,
                                                        num_inference_steps, batch_size, eta, guidance,
                                                        show_progress)
        if result is None:
            result = score_images(images, ref, extractor, seed, kid_subset_size, kid_subsets, show_progress=False)
            if digits is not None:  # a text-to-image model: does the classifier read the digit each prompt named?
                result.update(prompt_accuracy(features_of(images, extractor)[1], digits))
            if entry.kind != "samples":
                result["device"] = pipe.device.type  # where these samples were drawn (float rounding differs)
        result.update(model=entry.label, epoch=entry.epoch, step=entry.step, train_minutes=entry.train_minutes,
                      run=entry.run, seed=seed, **sampler, eta=eta, **weights)
        results.append(result)
        image_sets.append(images)
    if reuse:
        print(f"reused the scores of {reused} of {len(entries)} models from {reuse}")

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels = [e.label for e in entries]
    print(format_table(results, labels))
    summary = dict(reference_summary(ref, extractor), sd_course_version=__version__, floor=floor_scores,
                   results=results)
    if floor_scores is not None:
        print(f"real-data floor: fid_{FEATURE_NAME} {floor_scores[f'fid_{FEATURE_NAME}']:.4g} "
              f"({num_samples} images of {floor})")
    (out / "compare.json").write_text(json.dumps(summary, indent=2) + "\n")
    comparison_grid(image_sets, labels, grid_columns).save(out / "compare_grid.png")
    written = ["compare.json", "compare_grid.png"]
    if any(e.epoch is not None for e in entries):
        plot_metrics_vs_epoch(entries, results, out / "metrics_vs_epoch.png", floor_scores)
        written.append("metrics_vs_epoch.png")
    print(f"wrote {', '.join(str(out / w) for w in written)}")
    return results


# ---- evaluation during training ----------------------------------------------------------------------------------


def make_evaluator(reference: str, num_samples: int, seed: int = 0, num_inference_steps: int = 50,
                   scheduler: str | None = None, batch_size: int = 250, kid_subset_size: int | None = None,
                   num_reference: int | None = None, classifier: str | None = None, show_progress: bool = False):
    """A scorer for training: ``evaluator(pipeline) -> {metric name: float}``.

    The reference features are computed once, here; each call only samples ``num_samples`` images (always from the
    same seed, so the same starting noise: changes between epochs come from the model, not the dice) and scores
    them. ``scheduler`` (a name understood by ``sd_course.pixel.pipeline.load_pipeline``) replaces the training
    pipeline's scheduler for sampling; the pipeline itself is not changed.
    """
    _check_counts(num_samples, kid_subset_size)
    extractor = load_feature_extractor(classifier)
    ref = prepare_reference(reference, extractor, num_reference, show_progress=show_progress)
    sampler = {}  # the pipeline that samples, by training noise schedule: built when another scheduler is asked for

    def evaluator(pipeline) -> dict[str, float]:
        if isinstance(pipeline, DCGANGenerator):  # the GAN baseline: one call of its generator per image
            check_same_kind((pipeline.config.out_channels, pipeline.config.sample_size, pipeline.config.sample_size),
                            ref.image_shape, ref.spec, "samples of the generator")
            return _scores(generate_gan(pipeline, num_samples, seed, batch_size))
        if scheduler is not None:
            # one evaluator may score models trained with different noise schedules (benchmarks/recipe_sweep.py):
            # the sampler must use each model's own betas, so rebuild it whenever the schedule changes
            schedule = json.dumps(noise_schedule_of(pipeline.scheduler), sort_keys=True, default=str)
            if sampler.get("schedule") != schedule:  # load_pipeline knows the schedulers; give it a saved copy
                with tempfile.TemporaryDirectory() as tmp:
                    pipeline.save_pretrained(tmp)
                    sampler.update(pipe=load_pipeline(tmp, scheduler), schedule=schedule)
            sampler["pipe"].unet = pipeline.unet  # always the live (just trained) weights
            pipe = sampler["pipe"]
        else:
            pipe = pipeline
        check_same_kind(pipeline_image_shape(pipe), ref.image_shape, ref.spec, "samples of the pipeline")
        was_training = pipe.unet.training
        pipe.unet.eval()
        try:
            images, _ = _generate(pipe, num_samples, seed, None, num_inference_steps, batch_size, None, show_progress)
        finally:
            pipe.unet.train(was_training)
        return _scores(images)

    def _scores(images) -> dict[str, float]:
        result = score_images(images, ref, extractor, seed, kid_subset_size)
        return {k: float(v) for k, v in result.items() if isinstance(v, (int, float)) and k not in
                ("n", "kid_subset_size", "kid_subsets", "nearest_k", "precision_recall_n")}

    return evaluator


def training_evaluator(cfg):
    """The ``--eval_epochs K --eval_samples N`` hook of ``sd_course.train.loop`` (see training/train_unconditional.py):
    samples ``cfg.eval_samples`` images with DDIM (``cfg.ddpm_num_inference_steps`` steps, seed ``cfg.seed``) and
    scores them against ``cfg.eval_reference``. (A GAN's config has no steps: its generator needs one call.)"""
    return make_evaluator(cfg.eval_reference, cfg.eval_samples, seed=cfg.seed,
                          num_inference_steps=getattr(cfg, "ddpm_num_inference_steps", 50), scheduler="ddim")
