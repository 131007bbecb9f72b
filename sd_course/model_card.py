"""Export a trained pipeline with its model card: what ships in ``pipelines/`` and what goes to the Hub.

    sd-course evaluate --model runs/mnist --reference ylecun/mnist:test --num_samples 1000 \\
        --scheduler dpm++ --num_inference_steps 20 --output_json runs/mnist/metrics.json
    sd-course export runs/mnist --output pipelines/ddpm-mnist --metrics runs/mnist/metrics.json \\
        --dataset_id ylecun/mnist --license cc-by-sa-3.0

``export`` copies the pipeline of a training run (``model_index.json``, ``unet/``, ``scheduler/``; fp32 safetensors)
with its logs (``loss.jsonl``, ``training_config.json``, ``train_summary.json``), draws ``loss.png`` and a sample
grid ``samples.png``, and renders ``README.md`` from a template of ``model_cards/`` with huggingface_hub's
``ModelCard`` / ``ModelCardData`` (the YAML header the Hub reads: license, ``library_name: diffusers``, datasets,
tags, ``pipeline_tag: unconditional-image-generation``, and the metrics as ``model-index`` results). The folder is
built next to the target and renamed into place, so a failed export never leaves a half-written folder where a
good one was. Upload it with the standard API::

    from huggingface_hub import upload_folder
    upload_folder(repo_id="you/ddpm-mnist", folder_path="pipelines/ddpm-mnist")
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from sd_course.errors import InputError
from sd_course.shipped import find_shipped

TEMPLATE = "model_cards/ddpm-unconditional.md"
PIPELINE_FILES = ("model_index.json", "unet", "scheduler")
SNAPSHOT_RE = re.compile(r"^epoch-(\d+)$")  # a run's pipeline snapshot after epoch N (--save_model_epochs)
DEFAULT_LIMITATIONS = (
    "A small unconditional model trained on a CPU budget: most samples are clean digits, some are malformed or "
    "ambiguous (see the grid). The metrics use the features of sd_course's own MNIST classifier, not Inception: "
    "they compare models scored the same way, not numbers from papers. Unconditional: the digit class cannot be "
    "chosen (class conditioning comes later in the course)."
)


def _read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"could not read {what} {path} ({e}); give the JSON written by the training run or by "
                         "`sd-course evaluate --output_json`") from e


def check_run(run_dir: str | Path) -> Path:
    run = Path(run_dir)
    if not (run / "model_index.json").is_file() or not (run / "unet").is_dir():
        raise InputError(f"{str(run)!r} is not a trained pipeline folder (no model_index.json and unet/): give the "
                         "--output_dir of a training run, or one of its epoch-XXXX/ snapshots")
    return run


@dataclass
class RunRecord:
    """What a training run wrote about itself. For a snapshot ``RUN/epoch-000N/``, the run's files cut at epoch N."""

    config: dict = field(default_factory=dict)  # training_config.json
    summary: dict = field(default_factory=dict)  # train_summary.json (for a snapshot: recomputed up to its epoch)
    losses: list = field(default_factory=list)  # logs/loss.jsonl records
    evals: list = field(default_factory=list)  # logs/eval.jsonl records (--eval_epochs)
    snapshot_of: str | None = None  # "epoch N of M" for a snapshot


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def read_run(run: Path) -> RunRecord:
    record_dir, epoch = run, None
    match = SNAPSHOT_RE.match(run.name)
    if not (run / "training_config.json").exists() and match and (run.parent / "training_config.json").exists():
        record_dir, epoch = run.parent, int(match.group(1))
    cfg_path, summary_path = record_dir / "training_config.json", record_dir / "train_summary.json"
    record = RunRecord(
        config=_read_json(cfg_path, "training config") if cfg_path.exists() else {},
        summary=_read_json(summary_path, "train summary") if summary_path.exists() else {},
        losses=_jsonl(record_dir / "logs" / "loss.jsonl"), evals=_jsonl(record_dir / "logs" / "eval.jsonl"))
    if epoch is not None:  # keep what was true at the end of epoch N (loss records count epochs from 0)
        total = record.summary.get("epochs", "?")
        record.losses = [r for r in record.losses if int(r["epoch"]) < epoch]
        record.evals = [r for r in record.evals if int(r["epoch"]) <= epoch]
        last = record.losses[-1] if record.losses else {}
        record.summary = {k: v for k, v in record.summary.items() if k in (
            "num_images", "num_parameters", "num_processes", "mixed_precision", "images_per_s", "hardware",
            "software")}
        record.summary.update(epochs=epoch, global_step=last.get("step"), train_seconds=last.get("train_seconds"),
                              snapshot_of_run_epochs=total)
        record.snapshot_of = f"epoch {epoch} of {total}"
    return record


def write_run_files(record: RunRecord, folder: Path) -> None:
    """The run's logs beside the exported pipeline: training_config.json, train_summary.json, loss.jsonl, eval.jsonl."""
    if record.config:
        (folder / "training_config.json").write_text(json.dumps(record.config, indent=2) + "\n")
    if record.summary:
        (folder / "train_summary.json").write_text(json.dumps(record.summary, indent=2) + "\n")
    for name, records in (("loss.jsonl", record.losses), ("eval.jsonl", record.evals)):
        if records:
            (folder / name).write_text("".join(json.dumps(r) + "\n" for r in records))


# ----------------------------------------------------------------------------------------------------------------
# 1. The facts of a run, as text for the card
# ----------------------------------------------------------------------------------------------------------------


def _mean_last(records: list[dict], n: int = 100) -> float | None:
    losses = [float(r["loss"]) for r in records[-n:]]
    return sum(losses) / len(losses) if losses else None


def _minutes(seconds: float | None) -> str:
    return "?" if seconds is None else f"{seconds / 60:.1f} min"


def evaluation_markdown(metrics: dict | None, per_epoch: list[dict] | None = None) -> str:
    """The card's evaluation section: the metrics of ``sd-course evaluate`` and, when the run logged them
    (``--eval_epochs``), the same scores per epoch."""
    from sd_course.metrics import FEATURE_NAME, TABLE_METRICS

    if not metrics and not per_epoch:
        return "Not evaluated yet: run `sd-course evaluate` and export again with `--metrics`."
    lines = []
    if metrics:
        lines += [
            f"{metrics.get('n', '?')} samples from seeds {metrics.get('seed', 0)}.., sampler "
            f"`{metrics.get('scheduler')}` with {metrics.get('num_inference_steps')} steps, against "
            f"{metrics.get('reference_n', '?')} images of `{metrics.get('reference')}`, in the {metrics.get('feature_dim')}-d "
            f"feature space of `{metrics.get('feature_extractor')}` (sha256 "
            f"`{str(metrics.get('feature_extractor_sha256'))[:12]}…`; **not** Inception features). "
            f"Measured with sd_course {metrics.get('sd_course_version')}.",
            "",
            "| metric | value |",
            "|---|---|",
        ]
        for key in TABLE_METRICS:
            if key in metrics and metrics[key] is not None:
                value = metrics[key]
                lines.append(f"| `{key}` | {value:.4g} |" if isinstance(value, float) else f"| `{key}` | {value} |")
        hist = metrics.get(f"class_histogram_{FEATURE_NAME}")
        if hist:
            lines += ["", "Class histogram of the samples (digits 0-9, by the classifier): "
                      + ", ".join(f"{p:.3f}" for p in hist) + "."]
    if per_epoch:
        fid = f"fid_{FEATURE_NAME}"
        lines += ["", "During training (`--eval_epochs`):", "", "| epoch | step | FID (classifier) |", "|---|---|---|"]
        lines += [f"| {r['epoch']} | {r['step']} | {r[fid]:.2f} |" for r in per_epoch if fid in r]
    return "\n".join(lines)


def card_facts(run: Path, record: RunRecord, metrics: dict | None, load_path: str, train_command: str | None,
               hardware: str | None, grid: dict, dataset_id: str | None = None) -> dict:
    """Everything the template needs, read from the run's own files."""
    cfg, summary, losses, per_epoch = record.config, record.summary, record.losses, record.evals
    unet_config = _read_json(run / "unet" / "config.json", "U-Net config")
    scheduler_config = _read_json(run / "scheduler" / "scheduler_config.json", "scheduler config")
    weights = sorted((run / "unet").glob("*.safetensors"))
    size_mb = sum(w.stat().st_size for w in weights) / 2**20
    num_params = summary.get("num_parameters") or _count_from_safetensors(weights)
    processes = summary.get("num_processes", 1)
    batch = cfg.get("train_batch_size", "?")
    accum = cfg.get("gradient_accumulation_steps", 1)
    total_batch = batch * processes * accum if isinstance(batch, int) else "?"
    steps = summary.get("global_step") or (losses[-1]["step"] if losses else "?")
    recipe = (
        f"batch {total_batch} ({batch} x {processes} process(es) x {accum} accumulation), AdamW "
        f"(lr {cfg.get('learning_rate')}, betas ({cfg.get('adam_beta1')}, {cfg.get('adam_beta2')}), weight decay "
        f"{cfg.get('adam_weight_decay')}), {cfg.get('lr_warmup_steps')} warm-up steps then `{cfg.get('lr_scheduler')}`, "
        f"gradient clipping {cfg.get('max_grad_norm')}, mixed precision `{cfg.get('mixed_precision')}`, "
        + (f"EMA up to {cfg.get('ema_max_decay')} (power {cfg.get('ema_power')})" if cfg.get("use_ema") else "no EMA")
        + f", seed {cfg.get('seed')}"
    ) if cfg else "unknown (no training_config.json)"
    dataset = cfg.get("dataset_name") or cfg.get("train_data_dir") or "builtin:mnist-2k"
    data = f"`{dataset}`, split `{cfg.get('split', 'train')}`"
    if dataset_id and dataset_id != dataset:
        data = f"`{dataset_id}`, split `{cfg.get('split', 'train')}` (read from the local copy `{dataset}`)"
    if isinstance(summary.get("num_images"), int):
        data += f": {summary['num_images']:,} images"
    final_loss = _mean_last(losses)
    wall = summary.get("wall_clock_s")
    seen = f"about {steps * total_batch:,}" if isinstance(steps, int) and isinstance(total_batch, int) else "?"
    length = f"{summary.get('epochs', '?')} epochs, {steps} optimisation steps, {seen} images seen"
    if record.snapshot_of is not None:
        length = (f"the snapshot after epoch {summary['epochs']} of a {summary['snapshot_of_run_epochs']}-epoch run: "
                  f"{steps} optimisation steps, {seen} images seen")
    return dict(
        data=data,
        num_parameters=f"{num_params / 1e6:.2f}M" if isinstance(num_params, int) else "?",
        preset=cfg.get("model_config_name_or_path", "?"),
        image_shape=f"{unet_config['in_channels']}x{unet_config['sample_size']}x{unet_config['sample_size']}",
        num_train_timesteps=scheduler_config.get("num_train_timesteps"),
        beta_schedule=scheduler_config.get("beta_schedule"),
        prediction_type=scheduler_config.get("prediction_type"),
        recipe=recipe,
        length=length,
        weights=("EMA weights" if cfg.get("use_ema") else "trained weights") + f", fp32 safetensors, {size_mb:.1f} MB",
        final_loss=f"{final_loss:.4f}" if final_loss is not None else "?",
        wall_clock=f"{_minutes(summary.get('train_seconds'))} of optimisation steps"
                   + (f", {_minutes(wall)} in all (with sample grids and snapshots)" if wall else "")
                   + f"; {summary.get('images_per_s', '?')} images/s",
        hardware=hardware or summary.get("hardware", "unknown"),
        software=summary.get("software", "unknown"),
        train_command=train_command or "sd-course train --config training_config.json  # the resolved configuration",
        evaluation=evaluation_markdown(metrics, per_epoch),
        load_path=load_path,
        **grid,
    )


def _count_from_safetensors(weights: list[Path]) -> int | None:
    from safetensors.torch import load_file

    return sum(t.numel() for path in weights for t in load_file(str(path)).values()) or None


# ----------------------------------------------------------------------------------------------------------------
# 2. The card: metadata + the template
# ----------------------------------------------------------------------------------------------------------------


def card_data(name: str, dataset_id: str | None, license: str, metrics: dict | None):
    """The YAML header the Hub reads (huggingface_hub ``ModelCardData``), with the FID as a model-index result."""
    from huggingface_hub import EvalResult, ModelCardData

    from sd_course.metrics import FEATURE_NAME

    results = None
    fid = (metrics or {}).get(f"fid_{FEATURE_NAME}")
    if fid is not None and dataset_id:
        results = [EvalResult(task_type="unconditional-image-generation", dataset_type=dataset_id,
                              dataset_name=dataset_id, dataset_split="test", metric_type="fid",
                              metric_value=round(float(fid), 3),
                              metric_name=f"FID on sd_course's MNIST-classifier features ({metrics.get('n')} samples)")]
    return ModelCardData(
        license=license, library_name="diffusers", datasets=[dataset_id] if dataset_id else None,
        tags=["pytorch", "diffusers", "unconditional-image-generation", "diffusion-models-class", "ddpm", "sd_course"],
        pipeline_tag="unconditional-image-generation", model_name=name, eval_results=results,
    )


def find_template(template: str | Path | None = None) -> Path:
    """``template``, or the shipped ``model_cards/ddpm-unconditional.md``; InputError if it is not a file."""
    path = Path(template) if template else find_shipped(TEMPLATE)
    if path is None or not path.is_file():
        raise InputError(f"model card template {template or TEMPLATE} not found; pass --template PATH")
    return path


def render_card(facts: dict, data, name: str, summary: str, limitations: str, template: str | Path | None = None):
    from huggingface_hub import ModelCard

    return ModelCard.from_template(data, template_path=str(find_template(template)), model_name=name,
                                   summary=summary, limitations=limitations, **facts)


# ----------------------------------------------------------------------------------------------------------------
# 3. Export: staging folder, then one rename
# ----------------------------------------------------------------------------------------------------------------


def export_pipeline(run_dir: str | Path, output: str | Path, metrics_json: str | Path | None = None,
                    name: str | None = None, dataset_id: str | None = None, license: str = "apache-2.0",
                    summary: str | None = None, hardware: str | None = None, train_command: str | None = None,
                    load_path: str | None = None, num_grid: int = 64, scheduler: str = "dpm++",
                    num_inference_steps: int = 25, seed: int = 0, template: str | Path | None = None,
                    limitations: str = DEFAULT_LIMITATIONS, show_progress: bool = True) -> Path:
    """Copy ``run_dir``'s pipeline, logs, plots and a rendered card into ``output`` (atomically)."""
    from sd_course.pipeline import generate, load_pipeline
    from sd_course.schedulers import resolve_scheduler_name
    from sd_course.viz import save_grid, write_loss_plot

    run = check_run(run_dir)
    output = Path(output)
    if output.resolve() == run.resolve():
        raise InputError("--output must differ from the run folder: export writes a clean copy")
    metrics = _read_json(Path(metrics_json), "metrics") if metrics_json else None
    if num_grid <= 0 or num_inference_steps <= 0:
        raise InputError("--num_grid and --num_inference_steps must be positive")
    resolve_scheduler_name(scheduler)  # an unknown name or a missing template fails here, before any copying
    template = find_template(template)
    name = name or output.name
    staging, old = output.parent / f".{output.name}.export-new", output.parent / f".{output.name}.export-old"
    _recover(output, old)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        for entry in PIPELINE_FILES:
            src = run / entry
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, staging / entry)
        record = read_run(run)
        write_run_files(record, staging)
        if metrics is not None:
            (staging / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        if (staging / "loss.jsonl").exists():
            write_loss_plot(staging / "loss.jsonl", staging / "loss.png", title=f"{name}: training loss")
        pipe = load_pipeline(str(staging), scheduler)
        images = generate(pipe, num_grid, batch_size=64, num_inference_steps=num_inference_steps, seed=seed,
                          show_progress=show_progress)
        save_grid(images, staging / "samples.png")
        grid = dict(num_grid=num_grid, grid_sampler=f"{type(pipe.scheduler).__name__}, {num_inference_steps} steps",
                    grid_scheduler=scheduler, grid_steps=num_inference_steps)
        facts = card_facts(run, record, metrics, load_path or str(output), train_command, hardware, grid, dataset_id)
        summary = summary or (f"An unconditional DDPM (Ho et al. 2020) trained with "
                              f"sd_course (`sd-course train`, an `accelerate` loop) on {facts['data']}.")
        card = render_card(facts, card_data(name, dataset_id, license, metrics), name, summary, limitations, template)
        card.save(staging / "README.md")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    # The swap: the old folder steps aside, the new one steps in, the old one goes. A crash in between leaves
    # `.NAME.export-old`, which the next export (``_recover``) puts back if nothing took its place.
    if output.exists():
        os.replace(output, old)
    os.replace(staging, output)
    shutil.rmtree(old, ignore_errors=True)
    return output


def _recover(output: Path, old: Path) -> None:
    if old.exists():
        if output.exists():
            shutil.rmtree(old)
        else:
            os.replace(old, output)
