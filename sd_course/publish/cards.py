"""Model cards: the one place that turns a folder's own files (training_config.json, train_summary.json, the loss
log, metrics and results JSON) into a ``README.md`` the Hub reads, rendered from a template of ``model_cards/`` with
huggingface_hub's ``ModelCard`` / ``ModelCardData``.

    sd-course export runs/mnist --output pipelines/ddpm-mnist --metrics runs/mnist/metrics.json
    sd-course push runs/quick --repo_id YOUR_NAME/ddpm-mnist-quick      # renders a card when the folder has none

Every number a card shows is read from a file the run or a measuring command wrote; none is written here.
The Hub metadata (library, pipeline tag, tags) and the limitations text come from the folder's model kind
(``sd_course/kinds.py``), so a kind says once how it is described.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from safetensors.torch import load_file

from sd_course.core.checkpoints import replace_link
from sd_course.core.data import BUILTIN_DATASETS, DEFAULT_DATASET
from sd_course.core.errors import InputError
from sd_course.core.images import save_grid
from sd_course.core.kind import ModelKind
from sd_course.core.models import count_parameters
from sd_course.core.plots import write_loss_plot
from sd_course.core.shipped import find_shipped
from sd_course.evaluate.evaluation import TABLE_METRICS
from sd_course.evaluate.metrics import FEATURE_NAME
from sd_course.kinds import kind_of
from sd_course.latent.guidance import DEFAULT_GUIDANCE
from sd_course.latent.kind import AUTOENCODER, TEXT_TO_IMAGE
from sd_course.latent.text import known_words
from sd_course.pixel.kind import DDPM
from sd_course.pixel.pipeline import generate, load_pipeline

TEMPLATE = "model_cards/ddpm-unconditional.md"


# The one limitations text of every card; a kind's card may add what is its own (a text model's vocabulary, ...).
LIMITATIONS = (
    "A small model trained on a small budget for a course: look at the sample grid and the numbers before relying "
    "on it. The metrics use the features of sd_course's own MNIST classifier, not Inception: they compare models "
    "scored the same way, not numbers from papers."
)
DEFAULT_LIMITATIONS = LIMITATIONS + " Unconditional: the digit cannot be chosen (the text-to-image model "\
    "`pipelines/mini-sd-mnist` draws the digit its prompt names)."


def hub_metadata(kind: ModelKind, name: str, dataset_id: str | None, license: str = "apache-2.0",
                 eval_results=None) -> ModelCardData:
    """The YAML header the Hub reads, the same for every card of a kind: library, the kind's task and tags."""
    return ModelCardData(license=license, library_name="diffusers", datasets=[dataset_id] if dataset_id else None,
                         pipeline_tag=kind.pipeline_tag, model_name=name, eval_results=eval_results,
                         tags=["diffusers", *kind.tags, "diffusion-models-class", "sd_course"])


def _read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"could not read {what} {path} ({e}); give the JSON written by the training run or by "
                         "`sd-course evaluate --output_json`") from e


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


def _mean_last(records: list[dict], n: int = 100) -> float | None:
    losses = [float(r["loss"]) for r in records[-n:]]
    return sum(losses) / len(losses) if losses else None


def _minutes(seconds: float | None) -> str:
    return "?" if seconds is None else f"{seconds / 60:.1f} min"


def evaluation_markdown(metrics: dict | None, per_epoch: list[dict] | None = None) -> str:
    """The card's evaluation section: the metrics of ``sd-course evaluate`` and, when the run logged them
    (``--eval_epochs``), the same scores per epoch."""
    if not metrics and not per_epoch:
        return "Not evaluated yet: run `sd-course evaluate` and export again with `--metrics`."
    lines = []
    if metrics:
        lines += [
            f"{metrics.get('n', '?')} samples from seeds {metrics.get('seed', 0)}.., sampler "
            f"{_sampler(metrics)} with {metrics.get('num_inference_steps')} steps{_spacing(metrics)}, "
            "against "
            f"{metrics.get('reference_n', '?')} images of `{metrics.get('reference')}`, in the {metrics.get('feature_dim')}-d "
            f"feature space of `{metrics.get('feature_extractor')}` (sha256 "
            f"`{str(metrics.get('feature_extractor_sha256'))[:12]}…`; **not** Inception features). "
            f"Measured with sd_course {metrics.get('sd_course_version')}.",
        ]
        floor = metrics.get("floor") or {}
        fid = f"fid_{FEATURE_NAME}"
        if floor.get(fid):
            lines += ["", f"The floor: the first {floor['n']} real images of `{floor['spec']}` scored exactly like the "
                      "samples (`sd-course evaluate --floor`), the best any generator can score at this n. This "
                      f"model's FID is **{metrics[fid] / floor[fid]:.2f}x** the floor."]
        lines += ["", "| metric | value | real-data floor |" if floor else "| metric | value |",
                  "|---|---|---|" if floor else "|---|---|"]

        def cell(value):
            return f"{value:.4g}" if isinstance(value, float) else str(value)

        for key in TABLE_METRICS:
            if key in metrics and metrics[key] is not None:
                row = f"| `{key}` | {cell(metrics[key])} |"
                lines.append(row + (f" {cell(floor[key])} |" if key in floor else " |" if floor else ""))
        hist = metrics.get(f"class_histogram_{FEATURE_NAME}")
        if hist:
            lines += ["", "Class histogram of the samples (digits 0-9, by the classifier): "
                      + ", ".join(f"{p:.3f}" for p in hist) + "."]
    if per_epoch:
        fid = f"fid_{FEATURE_NAME}"
        lines += ["", "During training (`--eval_epochs`):", "", "| epoch | step | FID (classifier) |", "|---|---|---|"]
        lines += [f"| {r['epoch']} | {r['step']} | {r[fid]:.2f} |" for r in per_epoch if fid in r]
    return "\n".join(lines)


def grid_facts(num_grid: int, scheduler: str, steps: int, pipe) -> dict:
    """What the card says of its sample grid: how many, and which sampler (its name and class) with how many steps."""
    return dict(num_grid=num_grid, grid_sampler=f"{scheduler} ({type(pipe.scheduler).__name__}), {steps} steps",
                grid_scheduler=scheduler, grid_steps=steps)


def _sampler(result: dict) -> str:
    """'`dpm++-2m-sde` (DPMSolverMultistepScheduler)', or the class alone in results saved before the name was."""
    name, class_name = result.get("sampler"), result.get("scheduler")
    return f"`{name}` ({class_name})" if name else f"`{class_name}`"


def _spacing(result: dict, in_parentheses: bool = False) -> str:
    """Where a result's sampler put its steps, ' (`timestep_spacing="trailing"`)', or '' if it does not say (older
    results); ``in_parentheses``: as ', `timestep_spacing="trailing"`' inside a parenthesis already open."""
    spacing = result.get("timestep_spacing")
    if not spacing:
        return ""
    return f', `timestep_spacing="{spacing}"`' if in_parentheses else f' (`timestep_spacing="{spacing}"`)'


def ladder_markdown(ladder: dict | None, floor: dict | None = None) -> str:
    """The card's epoch ladder: one row per snapshot of ``sd-course compare RUN`` (its ``compare.json``), so the
    numbers of the rungs that are not shipped still live somewhere. ``floor`` (the ``floor`` of ``sd-course evaluate
    --floor``) adds each rung's FID as a multiple of the real-data floor, when both were scored at the same n. The
    rungs of a text-to-image run (rows with ``prompt_accuracy``) add a prompt-accuracy column, and the first sentence
    names the guidance scale they were sampled with."""
    rows = sorted((r for r in (ladder or {}).get("results", []) if r.get("epoch") is not None),
                  key=lambda r: r["epoch"])
    if not rows:
        return ("No ladder: run `sd-course compare RUN --output_dir DIR` over the run's `epoch-XXXX/` snapshots and "
                "export again with `--ladder DIR`.")
    first = rows[0]
    devices = {r.get("device") for r in rows} - {None}
    sampled_on = f", sampled on `{next(iter(devices))}`" if len(devices) == 1 else \
        ", each row sampled on the device `ladder.json` names" if devices else ""
    prompted = any(r.get("prompt_accuracy") is not None for r in rows)
    guided = [r["guidance_scale"] for r in rows if r.get("guidance_scale") is not None]
    guidance = f", guidance {guided[0]:g}" if guided else ""
    asked = (" Each digit was asked for in turn, in the training phrasings; prompt accuracy is the share of samples "
             "the classifier reads as the digit asked for.") if prompted else ""
    lines = [f"Every snapshot of the run, scored by `sd-course compare` on the same {first['n']} samples (seed "
             f"{first['seed']}, {_sampler(first)}, {first.get('num_inference_steps')} steps{_spacing(first, True)}"
             f"{guidance}{sampled_on}) against "
             f"{ladder.get('reference_n', '?')} images of `{ladder.get('reference')}` (classifier features).{asked} "
             "`ladder.json` holds every number; `ladder.png` plots them against epochs and minutes.", "",
             "![FID against epochs and training minutes](ladder.png)", "",
             "| epoch | steps | training minutes | FID | precision | recall | classes (min-max %) |"
             + (" prompt accuracy |" if prompted else ""),
             "|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if prompted else "")]
    fid = f"fid_{FEATURE_NAME}"
    floor_fid = _floor_fid(floor, first["n"])
    if floor_fid:
        lines[-2] = lines[-2].replace("| FID |", "| FID | x floor |")
        lines[-1] += "---:|"
        lines.insert(-4, f"The real-data floor at this n is FID {floor_fid:.2f} ({floor['n']} real images of "
                         f"`{floor['spec']}`, scored the same way).")
        lines.insert(-4, "")
    for r in rows:
        hist = r.get(f"class_histogram_{FEATURE_NAME}") or [float("nan")]
        minutes = f"{r['train_minutes']:.1f}" if r.get("train_minutes") is not None else "?"
        times = f" {r[fid] / floor_fid:.1f} |" if floor_fid else ""
        lines.append(f"| {r['epoch']} | {r.get('step') or '?'} | {minutes} | {r[fid]:.1f} |{times} "
                     f"{r[f'precision_{FEATURE_NAME}']:.3f} | {r[f'recall_{FEATURE_NAME}']:.3f} | "
                     f"{100 * min(hist):.1f}-{100 * max(hist):.1f} |"
                     + (f" {_accuracy(r.get('prompt_accuracy'))} |" if prompted else ""))
    return "\n".join(lines)


def _accuracy(value: float | None) -> str:
    """A prompt accuracy for a table cell ('-' for a row that has none: an unconditional model's)."""
    return "-" if value is None else f"{value:.3f}"


def read_sampler_tables(paths: list[str | Path]) -> dict:
    """One table from several ``benchmarks/scheduler_table.py --output_json`` files (e.g. the fast schedulers, then
    DDPM's 1000 steps on its own); InputError if one is not such a file or they were not measured the same way."""
    tables = [_read_json(Path(p), "scheduler table (benchmarks/scheduler_table.py)") for p in paths]
    if any(not isinstance(t, dict) or "rows" not in t or "args" not in t for t in tables):
        raise InputError("--samplers: expected the --output_json of benchmarks/scheduler_table.py "
                         "(an object with 'args' and 'rows')")
    keys = ("num_samples", "reference")
    first = tables[0]["args"]
    for table in tables[1:]:
        if any(table["args"].get(k) != first.get(k) for k in keys):
            raise InputError(f"--samplers: the tables differ in {', '.join(keys)} ({first} vs {table['args']}); "
                             "merge only tables measured the same way")
    return {"args": first, "rows": [row for table in tables for row in table["rows"]]}


def samplers_markdown(table: dict | None, floor_fid: float | None = None, slack: float = 1.5) -> str:
    """The card's scheduler table (sorted by FID) and its recommendation: the lowest FID, and, for when time matters,
    the fewest model calls among the schedulers whose FID is within ``slack`` x the lowest (the lower FID among
    those with as few). Model calls, not the measured images/s: samplers with the same calls differ in speed only by
    timing noise (the 25-call solvers ran at 5.9-6.6 images/s)."""
    rows = sorted((table or {}).get("rows", []), key=lambda r: r["fid"])
    if not rows:
        return ""
    n = table["args"].get("num_samples")
    best = rows[0]
    fast = min((r for r in rows if r["fid"] <= slack * best["fid"]), key=lambda r: (r["model_calls"], r["fid"]))
    floor = f" The real-data floor at this n is FID {floor_fid:.1f}." if floor_fid else ""

    spacings = {r.get("timestep_spacing") for r in rows} - {None}
    if len(spacings) == 1:
        spacing = f" Every sampler places its steps with `timestep_spacing=\"{next(iter(spacings))}\"`."
    else:  # e.g. "trailing", but Heun and KDPM2-ancestral on "leading" (sd_course.core.schedulers.LEADING_ONLY)
        spacing = "".join(
            f" `timestep_spacing=\"{value}\"`: "
            + ", ".join(f"`{r['scheduler']}`" for r in rows if r.get("timestep_spacing") == value) + "."
            for value in sorted(spacings))

    def name(r):
        return f"`{r['scheduler']}` {r['steps']} steps" + (f" ({r['timestep_spacing']})" if len(spacings) > 1 else "")

    devices = sorted({r.get("device") or "?" for r in rows})
    where = (f" on its machine (`{devices[0]}`)" if len(devices) == 1 and devices[0] != "?" else
             " on its machine" if len(devices) == 1 else
             " on the device each row names (the samples of one seed agree across devices up to float rounding; "
             "their speeds do not compare)")
    lines = [f"Every scheduler at its usual step count on this model: the same {n} starting noises (seed 0), scored "
             "against the test digits like the evaluation above (`benchmarks/scheduler_table.py`; `samplers.json` "
             f"holds every number). Images/s as the benchmark measured them{where}.{floor}{spacing}", "",
             f"**Recommended**: {name(best)} for the best digits (FID {best['fid']:.1f}, "
             f"{_speed(best, len(devices) > 1)})"
             + ("." if fast is best else f"; {name(fast)} when time matters (FID {fast['fid']:.1f}, "
                f"{_speed(fast, len(devices) > 1)}: the fewest model calls, {fast['model_calls']}, within {slack}x "
                "of the best FID)."),
             ""] + scheduler_table_lines(rows)
    return "\n".join(lines)


def _speed(row: dict, name_device: bool = False) -> str:
    """``5.3 images/s``, or ``5.3 images/s on cpu`` when a table mixes devices (benchmarks/scheduler_table.py
    --device)."""
    return f"{_rate(row['images_per_s'])} images/s" + (f" on {row.get('device') or '?'}" if name_device else "")


def _rate(images_per_s: float) -> str:
    """Two significant digits (5.3, 0.18), whole numbers from 100 up (a GPU's 238, not 2.4e+02)."""
    return f"{images_per_s:.0f}" if images_per_s >= 100 else f"{images_per_s:.2g}"


def scheduler_table_lines(rows: list[dict], spacing_column: bool = False) -> list[str]:
    """The markdown table of ``benchmarks/scheduler_table.py`` rows, in their order (the card's and the benchmark's)."""
    spacing = ("| spacing ", "|---", lambda r: f"| {r.get('timestep_spacing')} ") if spacing_column else \
        ("", "", lambda r: "")
    lines = [f"| scheduler | steps {spacing[0]}| model calls | FID | precision | recall | classes (min-max %) | images/s |",
             f"|---|---:{spacing[1]}|---:|---:|---:|---:|---:|---:|"]
    mixed = len({r.get("device") for r in rows}) > 1  # then each speed names its device
    return lines + [f"| `{r['scheduler']}` ({r['class']}) | {r['steps']} {spacing[2](r)}| {r['model_calls']} | "
                    f"{r['fid']:.1f} | {r['precision']:.3f} | {r['recall']:.3f} | "
                    f"{100 * r['class_min']:.1f}-{100 * r['class_max']:.1f} | "
                    f"{_rate(r['images_per_s'])}" + (f" ({r.get('device') or '?'})" if mixed else "") + " |" for r in rows]


def _resumed(summary: dict) -> str:
    """Where a run's wall clock starts: training records the step it resumed from; for runs saved before it did, a
    wall clock shorter than the carried training clock says the same."""
    if "resumed_from_step" in summary:
        step = summary["resumed_from_step"]
        return f" in its last session (resumed from step {step:,})" if step else ""
    wall = summary.get("wall_clock_s")
    return " in its last session (it was resumed)" if wall and wall < summary.get("train_seconds", 0) else ""


def metrics_from_ladder(ladder: dict, epoch: int | None, step: int | None) -> dict | None:
    """The scores of one rung of an ``sd-course compare`` ladder (the snapshot after ``epoch``, ``step`` steps) with
    the ladder's provenance: the same fields as ``sd-course evaluate --output_json`` (same protocol, same seeds)."""
    for row in ladder.get("results", []):
        if epoch is not None and row.get("epoch") == epoch and row.get("step") == step:
            provenance = {k: v for k, v in ladder.items() if k != "results"}
            return {**provenance, **row, "source": "model"}
    return None


def card_facts(run: Path, record: RunRecord, metrics: dict | None, load_path: str, train_command: str | None,
               hardware: str | None, grid: dict, dataset_id: str | None = None, ladder: dict | None = None,
               samplers: dict | None = None) -> dict:
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
                   + _resumed(summary)
                   + f"; {summary.get('images_per_s', '?')} images/s",
        hardware=hardware or summary.get("hardware", "unknown"),
        software=summary.get("software", "unknown"),
        train_command=train_command or (
            recipe_command("training/train_unconditional.py", cfg["config"], cfg, f"runs/{Path(load_path).name}",
                           dataset_id) + "  # the recipe this run was started with" if cfg.get("config")
            else "sd-course train --config training_config.json  # the resolved configuration"),
        evaluation=evaluation_markdown(metrics, per_epoch),
        ladder=ladder_markdown(ladder, (ladder or {}).get("floor") or (metrics or {}).get("floor")),
        samplers=samplers_markdown(samplers, _floor_fid((metrics or {}).get("floor"),
                                                        (samplers or {}).get("args", {}).get("num_samples"))),
        load_path=load_path,
        **grid,
    )


def _floor_fid(floor: dict | None, n: int | None) -> float | None:
    """The FID of a real-data floor (the ``floor`` of ``sd-course evaluate/compare --floor``), if it was scored at
    this n: a floor at another n is not comparable."""
    floor = floor or {}
    return floor.get(f"fid_{FEATURE_NAME}") if n is not None and floor.get("n") == n else None


def _count_from_safetensors(weights: list[Path]) -> int | None:
    return sum(t.numel() for path in weights for t in load_file(str(path)).values()) or None


def card_data(name: str, dataset_id: str | None, license: str, metrics: dict | None):
    """The YAML header the Hub reads (huggingface_hub ``ModelCardData``), with the FID as a model-index result."""
    results = None
    fid = (metrics or {}).get(f"fid_{FEATURE_NAME}")
    if fid is not None and dataset_id:
        results = [EvalResult(task_type="unconditional-image-generation", dataset_type=dataset_id,
                              dataset_name=dataset_id, dataset_split="test", metric_type="fid",
                              metric_value=round(float(fid), 3),
                              metric_name=f"FID on sd_course's MNIST-classifier features ({metrics.get('n')} samples)")]
    return hub_metadata(DDPM, name, dataset_id, license, results)


def find_template(template: str | Path | None = None) -> Path:
    """``template``, or the shipped ``model_cards/ddpm-unconditional.md``; InputError if it is not a file."""
    path = Path(template) if template else find_shipped(TEMPLATE)
    if path is None or not path.is_file():
        raise InputError(f"model card template {template or TEMPLATE} not found; pass --template PATH")
    return path


def render_card(facts: dict, data, name: str, summary: str, limitations: str, template: str | Path | None = None):
    return ModelCard.from_template(data, template_path=str(find_template(template)), model_name=name,
                                   summary=summary, limitations=limitations, **facts)


VAE_TEMPLATE = "model_cards/diffusers-model.md"


def _table(rows: list[tuple[str, str]]) -> str:
    return "| | |\n|---|---|\n" + "".join(f"| {k} | {v} |\n" for k, v in rows)


LAUNCH = "accelerate launch --num_cpu_threads_per_process 2"


def recipe_command(script: str, recipe: str, recorded: dict, output_dir: str, dataset_id: str | None) -> str:
    """How a card says to reproduce a run: ``accelerate launch ... SCRIPT --config RECIPE --output_dir DIR``, with
    the data only where the run read other data than its recipe names (a local copy of a Hub dataset: then
    ``dataset_id``, the Hub's name of it). ``recorded``: the run's training_config.json (empty: nothing is known)."""
    data = ""
    if recorded.get("train_data_dir"):
        data = f" --train_data_dir {recorded['train_data_dir']}"
    elif recorded:
        used = recorded.get("dataset_name") or DEFAULT_DATASET  # what training read when none was named
        if used != _recipe_dataset(recipe):
            data = f" --dataset_name {dataset_id if dataset_id and used not in BUILTIN_DATASETS else used}"
    return f"{LAUNCH} {script} --config {recipe}{data} --output_dir {output_dir}"


def _recipe_dataset(recipe: str) -> str | None:
    """The ``dataset_name`` a recipe (a repo-relative YAML path) names, or None where it cannot be read."""
    path = find_shipped(recipe.split()[0])
    try:
        return (yaml.safe_load(path.read_text()) or {}).get("dataset_name") if path and path.is_file() else None
    except (OSError, yaml.YAMLError):
        return None


def _vae_card(vae_dir: Path, vae_run: Path | None, vae_metrics: dict | None, load_path: str, license: str,
              dataset_id: str | None):
    """The card of the pipeline's ``vae/`` (an AutoencoderKL of its own, loadable and pushable alone)."""
    config = json.loads((vae_dir / "config.json").read_text())
    weights = sorted(vae_dir.glob("*.safetensors"))
    record = read_run(vae_run) if vae_run else None
    rows = []
    if vae_metrics:
        m = vae_metrics
        rows += [("reconstruction (10,000 test digits)", f"MSE {m['mse']:.5f}, PSNR {m['psnr_db']:.1f} dB"),
                 ("classifier accuracy", f"{m['classifier_accuracy_reconstructions']:.4f} on reconstructions, "
                                         f"{m['classifier_accuracy_originals']:.4f} on the originals"),
                 ("fid_mnist_classifier", f"{m['fid_reconstructions_of_train']:.2f} (reconstructions of train[:10k] "
                                          f"vs test) against the real-data floor {m['fid_floor_train_vs_test']:.2f}"),
                 ("latent std", f"{m['latents']['raw']['std']:.3f} raw, {m['latents']['scaled']['std']:.3f} scaled"),
                 ("speed (2 CPU cores)", f"encode {m['encode_images_per_s']:.0f} images/s, decode "
                                         f"{m['decode_images_per_s']:.0f} images/s")]
    c = (record.config or {}) if record else {}
    terms = "L1 reconstruction + KL" + (" + a perceptual term" if c.get("perceptual_weight") else "") + \
        (" + a patch discriminator" if c.get("adversarial_weight") else "")
    training = f"Trained by `training/train_vae.py` (`sd_course/latent/autoencoder.py`: {terms}).\n\n"
    # the recipe the run recorded (--config), else the first autoencoder's
    commands = recipe_command("training/train_vae.py", c.get("config") or "training/configs/vae-mnist.yaml", c,
                              f"runs/{vae_run.name}" if vae_run and c.get("config") else "runs/vae-mnist",
                              dataset_id) + "\n"
    if c.get("train_parts") == "decoder":
        training = (f"Trained in two stages by `training/train_vae.py` (`sd_course/latent/autoencoder.py`): the whole "
                    f"autoencoder with L1 reconstruction + KL, then its decoder alone with {terms} and the encoder "
                    "frozen (as Stable Diffusion's sd-vae-ft-mse refined SD 1.x's): the latents, their "
                    "`scaling_factor` and the U-Net trained on them did not change. The table is the second stage."
                    "\n\n")
        commands = "".join(recipe_command("training/train_vae.py", recipe, c, out, dataset_id) + "\n" for recipe, out in (
            ("training/configs/vae-mnist.yaml", "runs/vae-mnist"),
            ("training/configs/vae-mnist-decoder.yaml --pretrained_vae runs/vae-mnist", "runs/vae-decoder")))
    if record and record.summary:
        s = record.summary
        training += _table([("steps", f"{s['global_step']} ({s['epochs']} epoch(s), batch "
                                      f"{record.config.get('train_batch_size')})"),
                            ("minutes", _minutes(s.get("train_seconds"))), ("hardware", s.get("hardware", "?")),
                            ("final loss", f"{s['final_loss']:.4f}")])
        training += f"\n```bash\n{commands}```\n"
    if rows:
        training += "\n## Evaluation (`python benchmarks/vae_quality.py`)\n\n" + _table(rows)
    data = hub_metadata(AUTOENCODER, "mini-sd-mnist VAE", dataset_id, license)
    usage = ("\nEncode a batch of 1x32x32 digits in [-1, 1] (28x28 digits padded with black) to 4x8x8 latents, "
             "scaled for a diffusion model:\n\n```python\nz = model.encode(x).latent_dist.sample() * "
             "model.config.scaling_factor\nx_rec = model.decode(z / model.config.scaling_factor).sample\n```\n")
    return ModelCard.from_template(
        data, template_path=str(find_template(VAE_TEMPLATE)), model_name="mini-sd-mnist VAE",
        summary="The digit autoencoder of the mini Stable Diffusion `mini-sd-mnist`: a KL autoencoder (diffusers "
                "`AutoencoderKL`, Rombach et al. 2022) that turns a 32x32 digit into a 4x8x8 latent (784 pixels -> "
                "256 numbers) and back. Its `scaling_factor` (1 / std of the training latents) is in its config.",
        class_name="AutoencoderKL", load_path=load_path, usage=usage,
        num_parameters=f"{(_count_from_safetensors(weights) or 0) / 1e6:.2f}M",
        config_summary=f"channels {config['block_out_channels']}, {config['latent_channels']} latent channels, "
                       f"scaling_factor {config.get('scaling_factor', 1.0):.4f}",
        training=training,
        limitations="Trained on MNIST only: other images are reconstructed as digit-like strokes. The KL term is "
                    "small, so the latent space is smooth near real digits only (docs/latent_space.md).")


# What the Evaluation table of a text-to-image card reads from its metrics (``sd-course evaluate --output_json``); a
# ladder row (``sd-course compare``: training phrasings only, no held-out ones) stands for them only if it has all.
TEXT_CARD_METRICS = ("prompt_accuracy", "prompt_accuracy_heldout", f"fid_{FEATURE_NAME}", f"precision_{FEATURE_NAME}",
                     f"recall_{FEATURE_NAME}", "n", "scheduler", "num_inference_steps", "guidance_scale", "seed")


def card_guidance(metrics: dict | None) -> float:
    """The guidance a text-to-image card recommends: the one its evaluation was measured at (the guidance sweep
    chooses it: ``sd-course evaluate --guidance_scale W``), else :data:`DEFAULT_GUIDANCE`."""
    return float(metrics["guidance_scale"]) if metrics and metrics.get("guidance_scale") else DEFAULT_GUIDANCE


def _text_to_image_card(pipe, record: RunRecord, metrics, sweep, load_path, license, dataset_id, name,
                        robustness=None, ladder=None):
    """The card of a text-to-image export (``model_cards/text-to-image.md``). ``ladder``: the ``compare.json`` of
    ``sd-course compare`` over the run's snapshots, tabled as the card's epoch ladder. The reproduce command names
    the recipe the run recorded (``config`` in its training_config.json), else the shipped mini-SD's. With metrics,
    the YAML header recommends the guidance they were measured at (``inference: parameters: guidance_scale``), which
    ``sd-course sample`` / ``evaluate`` / the demo then use by default (``recommended_guidance``)."""
    guidance = card_guidance(metrics)
    s, c = record.summary or {}, record.config or {}
    components = "".join(f"| `{n}` | `{type(getattr(pipe, n)).__name__}` | "
                         f"{count_parameters(getattr(pipe, n)) / 1e6:.2f}M |\n"
                         for n in ("vae", "text_encoder", "unet"))
    components += f"| `tokenizer` | `CLIPTokenizer` | {len(pipe.tokenizer.get_vocab())} tokens (BPE learnt from " \
                  f"the captions) |\n| `scheduler` | `{type(pipe.scheduler).__name__}` | " \
                  f"`{pipe.scheduler.config.beta_schedule}`, T = {pipe.scheduler.config.num_train_timesteps} |\n"
    training = _table([
        ("data", f"{s.get('num_images', '?')} MNIST training digits, padded to 32x32, encoded once by the frozen VAE; "
                 f"captions from the labels (10 phrasings, words and numerals), {c.get('caption_dropout', 0):.0%} "
                 "empty" + (f", {c['filler_captions']:.0%} with 1-12 random filler words around the digit's (and as "
                            "many of the empty ones filler only), so that words it never saw are ignored"
                            if c.get("filler_captions") else "") +
                 f"; at most {c.get('tokenizer_max_length', 16)} tokens"),
        ("recipe", f"AdamW lr {c.get('learning_rate')} ({c.get('lr_scheduler')}, {c.get('lr_warmup_steps')} warm-up "
                   f"steps), batch {c.get('train_batch_size')}, EMA (max decay {c.get('ema_max_decay')}), "
                   f"{'fp32' if c.get('mixed_precision') == 'no' else c.get('mixed_precision')}, caption dropout {c.get('caption_dropout')}"),
        ("length", f"{s.get('global_step')} steps, {s.get('epochs')} epochs, "
                   f"{s.get('global_step', 0) * c.get('train_batch_size', 0):,} images seen"),
        ("CPU-minutes", f"{_minutes(s.get('train_seconds'))} of optimisation ({s.get('images_per_s')} images/s)"),
        ("hardware", s.get("hardware", "?")), ("software", s.get("software", "?")),
        ("final loss", f"{_mean_last(record.losses) or float('nan'):.4f} (mean of the last 100 steps)")])
    script = "training/train_text_to_image.py"
    if c.get("pretrained_model_name_or_path"):  # a second stage, started from another pipeline
        training += (f"\nThis run started from `{c['pretrained_model_name_or_path']}`, a pipeline trained from scratch "
                     "(its card says how). Reproduce both stages (a run continues exactly with "
                     "`--resume_from_checkpoint latest --num_epochs N`):\n\n```bash\n"
                     + recipe_command(script, "training/configs/mini-sd-mnist.yaml", c, "runs/mini-sd", dataset_id)
                     + "\n" + recipe_command(script, "training/configs/mini-sd-mnist-robust.yaml "
                                            "--pretrained_model_name_or_path runs/mini-sd", c, "runs/mini-sd-robust",
                                            dataset_id) + "\n```\n\n![loss](loss.png)\n")
    elif c.get("config"):  # the recipe (--config) the run was started with, as training recorded it
        vae = (f" It reads the autoencoder in `{c['vae_name_or_path']}`: train that first (`vae/README.md` says "
               "how).") if c.get("vae_name_or_path") else ""
        training += ("\nReproduce (the recipe this run was started with; a run continues exactly with "
                     f"`--resume_from_checkpoint latest --num_epochs N`).{vae}\n\n```bash\n"
                     + recipe_command(script, c["config"], c, f"runs/{name}", dataset_id)
                     + "\n```\n\n![loss](loss.png)\n")
    else:
        training += ("\nReproduce (on a GPU add `--num_epochs 100`; a run continues exactly with "
                     "`--resume_from_checkpoint latest --num_epochs N`):\n\n```bash\n"
                     + recipe_command(script, "training/configs/mini-sd-mnist.yaml", c, "runs/mini-sd", dataset_id)
                     + "\n```\n\n![loss](loss.png)\n")
    results = None
    if metrics:
        fid = metrics[f"fid_{FEATURE_NAME}"]
        training += "\n## Evaluation\n\n" + _table([
            ("prompt accuracy", f"{metrics['prompt_accuracy']:.3f} on the training phrasings, "
                                f"{metrics['prompt_accuracy_heldout']:.3f} on held-out phrasings (the shipped MNIST "
                                "classifier reads each image as the digit asked for)"),
            ("fid_mnist_classifier", f"{fid:.2f} on {metrics['n']} samples (the real-data floor, FID of real training "
                                     "digits against the test set, is 6.9 at n = 1,000: benchmarks/metric_floor.py)"),
            ("precision / recall", f"{metrics[f'precision_{FEATURE_NAME}']:.3f} / {metrics[f'recall_{FEATURE_NAME}']:.3f}"),
            ("setting", f"{metrics['n']} samples per phrasing set, {metrics['scheduler']} "
                        f"{metrics['num_inference_steps']} steps, guidance {metrics['guidance_scale']}, seed "
                        f"{metrics['seed']}, against {metrics.get('reference_spec', metrics.get('reference', '?'))}")])
        if dataset_id:
            results = [EvalResult(task_type="text-to-image", dataset_type=dataset_id, dataset_name=dataset_id,
                                  dataset_split="test", metric_type="fid", metric_value=round(float(fid), 3),
                                  metric_name="FID on sd_course's MNIST-classifier features")]
    sweep = sweep["rows"] if isinstance(sweep, dict) else sweep  # benchmarks/guidance_sweep.py (older files: a list)
    if sweep:
        training += ("\n### Classifier-free guidance (`python benchmarks/guidance_sweep.py`)\n\n| w | prompt accuracy "
                     "(training phrasings) | prompt accuracy (held-out) | FID |\n|---|---|---|---|\n")
        training += "".join(f"| {r['guidance_scale']:g} | {r['prompt_accuracy']:.3f} | "
                            f"{r['prompt_accuracy_heldout']:.3f} | {r['fid']:.1f} |\n" for r in sweep)
    if robustness:
        training += robustness_table(robustness)
    data = hub_metadata(TEXT_TO_IMAGE, name, dataset_id, license, results)
    if metrics:
        data.inference = {"parameters": {"guidance_scale": guidance}}
    summary = ("A mini Stable Diffusion trained from scratch on a CPU with sd_course: every part (autoencoder, "
               "tokenizer, text encoder, U-Net) was trained here on MNIST, offline. Ask for a digit in words or "
               "numerals (\"a handwritten digit seven\", \"the number 3\", \"7\")" +
               (", in any phrasing (\"draw me a 7, please\"): it was trained to ignore words it never saw"
                if c.get("filler_captions") else "") + ".\n\n"
               "![rows: seeds 0-3; columns: \"a handwritten digit zero\" ... \"nine\"; DPM-Solver++ 25 steps, "
               f"guidance {guidance:g}](samples.png)")
    return ModelCard.from_template(
        data, template_path=str(find_template(T2I_TEMPLATE)), model_name=name, summary=summary,
        load_path=load_path, example_prompt="a handwritten digit seven", guidance_scale=f"{guidance:g}",
        component_list="`vae/`, `tokenizer/`, `text_encoder/`, `unet/`, `scheduler/`; no safety checker",
        components=components.rstrip("\n"), training=training,
        ladder=ladder_markdown(ladder, (ladder or {}).get("floor") or (metrics or {}).get("floor")),
        limitations=text_to_image_limitations(pipe))


ROBUSTNESS_GROUPS = {"training": "the ten training phrasings", "heldout_known_words": "new phrasings of known words",
                     "heldout_unseen_words": "phrasings with words it never saw"}


def robustness_table(result: dict) -> str:
    """The card's "Any phrasing?" section, from the JSON of benchmarks/prompt_robustness.py."""
    rows = "".join(f"| {ROBUSTNESS_GROUPS.get(group, group)} | {g['prompt_accuracy']:.1%} | "
                   f"{g['worst_prompt_accuracy']:.1%} | {g['worst_fid_over_floor']:.2f}x |\n"
                   for group, g in result["groups"].items())
    overall = result["overall"]
    return ("\n### Any phrasing? (`python benchmarks/prompt_robustness.py`)\n\n"
            f"Loaded with plain diffusers, {result['num_per_phrasing']} images per phrasing (each digit equally often), "
            f"DPM-Solver++ {result['steps']} steps, guidance {result['guidance_scale']:g}; the shipped classifier reads "
            "each image.\n\n| phrasings | prompt accuracy | worst phrasing | worst FID / its floor |\n|---|---|---|---|\n"
            + rows + f"\nAll {overall['n']:,} digit-naming samples together: FID {overall['fid']:.1f}, "
            f"{overall['fid_over_floor']:.2f}x the real-data floor at that n ({overall['floor_fid']:.1f}). Prompts "
            "naming no digit (\"\", \"a cat\", ...) give digits read with mean confidence "
            f"{sum(r['mean_confidence'] for r in result['no_digit']) / len(result['no_digit']):.2f}.\n")


def text_to_image_limitations(pipe) -> str:
    """The limitations of a text-to-image card: the common text and what a prompt can and cannot say."""
    words = known_words(pipe.tokenizer)
    vocabulary = (f" It knows the {len(words)} words of its captions (tokenizer/caption_words.json); sd-course notes "
                  "the words of a prompt it never saw." if words else "")
    return (LIMITATIONS + " 32x32 grayscale digits only." + vocabulary + " EDM-Euler is not sampled correctly by the "
            "stock StableDiffusionPipeline (docs/stable_diffusion.md).")


CARD_GRID = (16, "dpm++", 20)  # the sample grid of a rendered DDPM card: images, scheduler, steps (seed 0)


def _num_parameters(module) -> str:
    try:
        return f"{sum(p.numel() for p in module.parameters()) / 1e6:.2f}M"
    except AttributeError:
        return "-"


def _template(name: str) -> Path:
    path = find_shipped(f"model_cards/{name}")
    if path is None or not path.is_file():
        raise InputError(f"the card template model_cards/{name} is missing from this installation of sd_course; "
                         "reinstall it (pip install -e .) or add a README.md to the folder before pushing")
    return path


def _training_text(folder: Path) -> tuple[str, str | None]:
    """What ``training_config.json`` says (a line for the card), and the Hub dataset id it names, if any."""
    path = folder / "training_config.json"
    if not path.is_file():
        return "No training record in the folder (`training_config.json`).", None
    cfg = _read_config(path)
    dataset = cfg.get("dataset_name") or cfg.get("train_data_dir")
    keys = ("dataset_name", "train_data_dir", "resolution", "train_batch_size", "learning_rate", "num_epochs",
            "max_train_steps", "mixed_precision", "seed")
    facts = ", ".join(f"`{k}` {cfg[k]}" for k in keys if cfg.get(k) is not None)
    hub_dataset = dataset if isinstance(dataset, str) and REPO_ID_RE.match(dataset) and dataset.count("/") == 1 \
        and not Path(dataset).exists() else None
    return (f"Trained with sd_course ({facts}); the full configuration is in `training_config.json`.", hub_dataset)


def _ddpm_card(folder: Path, staging: Path, repo_id: str, show_progress: bool):
    """The export card (``model_cards/ddpm-unconditional.md``), with a fresh 16-image grid and the loss plot."""
    record = read_run(folder)
    metrics_path = folder / "metrics.json"
    metrics = _read_config(metrics_path) if metrics_path.is_file() else None
    num_grid, scheduler, steps = CARD_GRID
    pipe = load_pipeline(str(folder), scheduler)
    replace_link(staging / "samples.png")
    save_grid(generate(pipe, num_grid, num_inference_steps=steps, seed=0, show_progress=show_progress),
              staging / "samples.png")
    if record.losses and not (staging / "loss.png").exists():
        loss_jsonl = staging / "loss.jsonl"
        if not loss_jsonl.exists():
            loss_jsonl.write_text("".join(json.dumps(r) + "\n" for r in record.losses))
        write_loss_plot(loss_jsonl, staging / "loss.png", title=f"{folder.name}: training loss")
    grid = grid_facts(num_grid, scheduler, steps, pipe)
    dataset_id = _training_text(folder)[1]
    facts = card_facts(folder, record, metrics, repo_id, None, None, grid, dataset_id)
    summary = (f"An unconditional DDPM (Ho et al. 2020) trained with sd_course (`sd-course train`, an `accelerate` "
               f"loop) on {facts['data']}.")
    name = repo_id.split("/")[-1]
    return render_card(facts, card_data(name, dataset_id, "apache-2.0", metrics), name, summary,
                                  DEFAULT_LIMITATIONS)


def _folder_text_to_image_card(folder: Path, pipe, repo_id: str):
    training, dataset_id = _training_text(folder)
    index = _read_config(folder / "model_index.json")
    names = [k for k in index if not k.startswith("_") and isinstance(index[k], list) and index[k][1]]
    rows = [f"| `{n}` | `{type(getattr(pipe, n)).__name__}` | {_num_parameters(getattr(pipe, n))} |" for n in names]
    cfg_path = folder / "training_config.json"
    prompts = (_read_config(cfg_path).get("validation_prompts") if cfg_path.is_file() else None) or []
    prompt = prompts[0] if prompts else "a handwritten digit three"  # the captions of sd_course.latent.text_to_image
    data = hub_metadata(TEXT_TO_IMAGE, repo_id.split("/")[-1], dataset_id)
    return ModelCard.from_template(
        data, template_path=str(_template("text-to-image.md")),
        model_name=repo_id.split("/")[-1], load_path=repo_id, example_prompt=prompt,
        summary="A latent text-to-image diffusion model (the Stable Diffusion architecture, small) trained with "
                "sd_course: a text encoder reads the prompt, a U-Net denoises latents under cross-attention to it, "
                "and a VAE decodes the latents to pixels.",
        component_list=", ".join(f"`{n}/`" for n in names), components="\n".join(rows), training=training,
        limitations=text_to_image_limitations(pipe))


def _model_card_for_model(folder: Path, model, kind: ModelKind, repo_id: str):
    training, dataset_id = _training_text(folder)
    config = {k: v for k, v in dict(model.config).items() if not k.startswith("_")}
    shown = ("in_channels", "out_channels", "latent_channels", "sample_size", "block_out_channels", "layers_per_block",
             "scaling_factor")
    config_summary = ", ".join(f"`{k}` {config[k]}" for k in shown if k in config) or "see `config.json`"
    class_name = type(model).__name__
    usage, summary = "", f"A `{class_name}` trained with sd_course."
    if kind is AUTOENCODER:
        summary = (f"A variational autoencoder (`{class_name}`) trained with sd_course: it compresses images to a "
                   "small latent grid and decodes them back, the first stage of a latent diffusion model.")
        usage = ("\n```python\nlatents = model.encode(images).latent_dist.sample() * model.config.scaling_factor"
                 "   # images in [-1, 1]\nreconstruction = model.decode(latents / model.config.scaling_factor).sample"
                 "\n```\n")
    # A single model has no Hub task of its own (no pipeline_tag: the Hub's widget would run a whole pipeline).
    data = hub_metadata(kind, repo_id.split("/")[-1], dataset_id)
    return ModelCard.from_template(
        data, template_path=str(_template("diffusers-model.md")),
        model_name=repo_id.split("/")[-1], load_path=repo_id, class_name=class_name, summary=summary, usage=usage,
        num_parameters=_num_parameters(model), config_summary=config_summary, training=training,
        limitations=LIMITATIONS)


def card_for_folder(folder: Path, loaded, staging: Path, repo_id: str, show_progress: bool = True):
    """A ModelCard for a folder that has none (written into ``staging``, never into ``folder``)."""
    kind = kind_of(str(folder))
    if kind is DDPM:
        card = _ddpm_card(folder, staging, repo_id, show_progress)
    elif kind is TEXT_TO_IMAGE:
        card = _folder_text_to_image_card(folder, loaded, repo_id)
    elif kind.card_template == "diffusers-model.md":  # a single model's folder (an autoencoder, a GAN generator)
        card = _model_card_for_model(folder, loaded, kind, repo_id)
    else:
        raise InputError(f"{str(folder)!r} holds {kind.description}, without a model card (README.md), and sd_course "
                         "renders cards only for DDPM, Stable Diffusion and single-model folders: write a README.md "
                         "(see https://huggingface.co/docs/hub/model-cards) and push again")
    card.save(staging / "README.md")
    return card


SNAPSHOT_RE = re.compile(r"^epoch-(\d+)$")  # a run's pipeline snapshot after epoch N (--save_model_epochs)


T2I_TEMPLATE = "model_cards/text-to-image.md"


REPO_ID_RE = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9._-]{0,95}/)?[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


def _read_config(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"{path} is not readable JSON ({e}); re-save the folder with save_pretrained") from e


