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
import shutil
from pathlib import Path

import torch

from sd_course.core.checkpoints import (
    ReadLock,
    check_export_target,
    describe_os_error,
    follow_umask,
    write_export_marker,
)
from sd_course.core.device import resolve_device
from sd_course.core.errors import InputError
from sd_course.core.images import save_grid
from sd_course.core.plots import write_loss_plot
from sd_course.core.schedulers import resolve_scheduler_name
from sd_course.kinds import kind_of
from sd_course.latent.guidance import generate_from_prompts
from sd_course.latent.kind import TEXT_TO_IMAGE
from sd_course.latent.text import caption
from sd_course.latent.text_to_image import load_text_to_image_pipeline
from sd_course.pixel.pipeline import generate, load_pipeline
from sd_course.publish.cards import (
    DEFAULT_LIMITATIONS,
    T2I_TEMPLATE,
    TEXT_CARD_METRICS,
    VAE_TEMPLATE,
    RunRecord,
    _read_json,
    _text_to_image_card,
    _vae_card,
    card_data,
    card_facts,
    card_guidance,
    find_template,
    grid_facts,
    metrics_from_ladder,
    read_run,
    read_sampler_tables,
    render_card,
)

PIPELINE_FILES = ("model_index.json", "unet", "scheduler")


def check_run(run_dir: str | Path) -> Path:
    run = Path(run_dir)
    if not (run / "model_index.json").is_file() or not (run / "unet").is_dir():
        raise InputError(f"{str(run)!r} is not a trained pipeline folder (no model_index.json and unet/): give the "
                         "--output_dir of a training run, or one of its epoch-XXXX/ snapshots")
    return run


def write_ladder(ladder: dict, ladder_dir: str | Path, folder: Path) -> None:
    """An ``sd-course compare`` ladder beside the exported pipeline: its ``compare.json`` as ``ladder.json`` and its
    ``metrics_vs_epoch.png`` (when it drew one) as ``ladder.png``."""
    (folder / "ladder.json").write_text(json.dumps(ladder, indent=2) + "\n")
    if (Path(ladder_dir) / "metrics_vs_epoch.png").is_file():
        shutil.copy2(Path(ladder_dir) / "metrics_vs_epoch.png", folder / "ladder.png")


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
# 3. Export: staging folder, then one rename
# ----------------------------------------------------------------------------------------------------------------


def exports_text_to_image(run: str | Path) -> bool:
    """Whether ``sd-course export`` takes ``run`` as a text-to-image run (its kind, from the registry), rather than
    a DDPM run; a folder of another kind is refused by the exporter with a line that names it."""
    return kind_of(str(run)) is TEXT_TO_IMAGE


def export_pipeline(run_dir: str | Path, output: str | Path, metrics_json: str | Path | None = None,
                    name: str | None = None, dataset_id: str | None = None, license: str = "apache-2.0",
                    summary: str | None = None, hardware: str | None = None, train_command: str | None = None,
                    load_path: str | None = None, num_grid: int = 64, scheduler: str = "dpm++",
                    num_inference_steps: int = 25, seed: int = 0, template: str | Path | None = None,
                    limitations: str = DEFAULT_LIMITATIONS, ladder_dir: str | Path | None = None,
                    sampler_tables: list[str | Path] | None = None, show_progress: bool = True,
                    overwrite: bool = False, device: str | None = "auto") -> Path:
    """Copy ``run_dir``'s pipeline, logs, plots and a rendered card into ``output`` (atomically). ``ladder_dir``:
    the ``--output_dir`` of ``sd-course compare`` over the run's snapshots, copied as ``ladder.json``/``ladder.png``
    and tabulated in the card; without ``metrics_json``, the exported epoch's own row of the ladder is its metrics.
    ``sampler_tables``: ``benchmarks/scheduler_table.py`` results, merged into ``samplers.json`` and the card."""
    with ReadLock(Path(run_dir), "export"):  # a run still training says so first (it may have no model yet)
        run = check_run(run_dir)
    output = Path(output)
    if output.expanduser().resolve() == run.resolve():
        raise InputError("--output must differ from the run folder: export writes a clean copy")
    metrics = _read_json(Path(metrics_json), "metrics") if metrics_json else None
    ladder = _read_json(Path(ladder_dir) / "compare.json", "ladder (sd-course compare)") if ladder_dir else None
    samplers = read_sampler_tables(sampler_tables) if sampler_tables else None
    if num_grid <= 0 or num_inference_steps <= 0:
        raise InputError("--num_grid and --num_inference_steps must be positive")
    resolve_scheduler_name(scheduler)  # an unknown name or a missing template fails here, before any copying
    template = find_template(template)
    check_export_target(output, run, "ddpm", overwrite)  # last of the checks: what is there is never deleted
    name = name or output.name
    record = read_run(run)
    if metrics is None and ladder is not None:
        metrics = metrics_from_ladder(ladder, record.summary.get("epochs"), record.summary.get("global_step"))

    def write(staging: Path) -> None:
        for entry in PIPELINE_FILES:
            src = run / entry
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, staging / entry)
        write_run_files(record, staging)
        if metrics is not None:
            (staging / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        if (staging / "loss.jsonl").exists():
            write_loss_plot(staging / "loss.jsonl", staging / "loss.png", title=f"{name}: training loss")
        if samplers is not None:
            (staging / "samplers.json").write_text(json.dumps(samplers, indent=2) + "\n")
        if ladder is not None:
            write_ladder(ladder, ladder_dir, staging)
        pipe = load_pipeline(str(staging), scheduler, device=device)
        images = generate(pipe, num_grid, batch_size=64, num_inference_steps=num_inference_steps, seed=seed,
                          show_progress=show_progress)
        save_grid(images, staging / "samples.png")
        grid = grid_facts(num_grid, scheduler, num_inference_steps, pipe)
        facts = card_facts(run, record, metrics, load_path or str(output), train_command, hardware, grid, dataset_id,
                           ladder, samplers)
        text = summary or (f"An unconditional DDPM (Ho et al. 2020) trained with "
                           f"sd_course (`sd-course train`, an `accelerate` loop) on {facts['data']}.")
        card = render_card(facts, card_data(name, dataset_id, license, metrics), name, text, limitations, template)
        card.save(staging / "README.md")

    return _atomic_export(output, write, "ddpm", run)


def _atomic_export(output: Path, write, what: str, source: Path) -> Path:
    with ReadLock(source, "export"):  # a run that is still training is not exported half-written
        return _swap_export(output, write, what, source)


def _swap_export(output: Path, write, what: str, source: Path) -> Path:
    """``write(staging)`` fills a staging folder beside ``output``; only if it succeeds does the folder replace
    ``output``, in one rename. A failure (or Ctrl-C) leaves the old ``output`` as it was."""
    staging, old = output.parent / f".{output.name}.export-new", output.parent / f".{output.name}.export-old"
    try:
        _recover(output, old)
        shutil.rmtree(staging, ignore_errors=True)  # only ever a staging folder of ours (its dot-name says so)
        staging.mkdir(parents=True)
    except OSError as e:
        raise InputError(f"cannot write the export beside {output}: {describe_os_error(e)}") from e
    try:
        write(staging)
        write_export_marker(staging, what, source)
        follow_umask(staging)
    except BaseException as e:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(e, OSError):
            raise InputError(f"cannot write the export to {output}: {describe_os_error(e)}; "
                             + ("the previous export is intact" if output.exists() else "nothing was written")) from e
        raise
    # The swap: the old folder steps aside, the new one steps in, the old one goes. A crash in between leaves
    # `.NAME.export-old`, which the next export (``_recover``) puts back if nothing took its place. The old folder
    # is, by check_export_target, empty or an earlier export of the same kind.
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


# ----------------------------------------------------------------------------------------------------------------
# 4. Text-to-image runs (a StableDiffusionPipeline folder) and their autoencoder
# ----------------------------------------------------------------------------------------------------------------


def export_text_to_image(run_dir: str | Path, output: str | Path, metrics_json: str | Path | None = None,
                         guidance_json: str | Path | None = None, vae_run: str | Path | None = None,
                         vae_metrics_json: str | Path | None = None, dataset_id: str | None = None,
                         license: str = "apache-2.0", load_path: str | None = None, seeds: int = 4,
                         show_progress: bool = True, overwrite: bool = False,
                         device: str | None = "auto", robustness_json: str | Path | None = None,
                         ladder_dir: str | Path | None = None) -> Path:
    """Copy a text-to-image run (or snapshot) with its logs, a loss plot, a grid of the ten digits by prompt x
    ``seeds`` seeds and two cards (the pipeline's and its VAE's) into ``output``, atomically. The results given
    (metrics, guidance sweep, prompt robustness) are kept beside the weights and tabled in the card. ``ladder_dir``:
    the ``--output_dir`` of ``sd-course compare`` over the run's snapshots, copied as ``ladder.json``/``ladder.png``
    and tabled in the card; without ``metrics_json``, the exported epoch's own row of the ladder is its metrics when
    it holds every number the card's Evaluation table shows (a ladder scores the training phrasings only, so
    usually not: then the card has no Evaluation table)."""
    run = Path(run_dir)
    if kind_of(str(run)) is not TEXT_TO_IMAGE:
        raise InputError(f"{run} is not a text-to-image pipeline folder (model_index.json with a text_encoder)")
    output = Path(output)
    check_export_target(output, run, "text-to-image", overwrite)
    metrics = _read_json(Path(metrics_json), "metrics") if metrics_json else None
    sweep = _read_json(Path(guidance_json), "guidance sweep") if guidance_json else None
    vae_metrics = _read_json(Path(vae_metrics_json), "VAE metrics") if vae_metrics_json else None
    robustness = _read_json(Path(robustness_json), "prompt robustness") if robustness_json else None
    ladder = _read_json(Path(ladder_dir) / "compare.json", "ladder (sd-course compare)") if ladder_dir else None
    find_template(T2I_TEMPLATE), find_template(VAE_TEMPLATE)
    load_path = load_path or str(output)
    record = read_run(run)
    if metrics is None and ladder is not None:
        row = metrics_from_ladder(ladder, record.summary.get("epochs"), record.summary.get("global_step"))
        metrics = row if row and all(row.get(key) is not None for key in TEXT_CARD_METRICS) else None

    def write(staging: Path) -> None:
        index = json.loads((run / "model_index.json").read_text())
        for entry in ["model_index.json"] + [k for k, v in index.items() if isinstance(v, list) and v[0]]:
            src = run / entry
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, staging / entry)
        write_run_files(record, staging)
        for name, value in (("metrics.json", metrics), ("guidance_sweep.json", sweep),
                            ("prompt_robustness.json", robustness)):
            if value is not None:
                (staging / name).write_text(json.dumps(value, indent=2) + "\n")
        if ladder is not None:
            write_ladder(ladder, ladder_dir, staging)
        write_loss_plot(staging / "loss.jsonl", staging / "loss.png", title=f"{output.name}: training loss")
        pipe = load_text_to_image_pipeline(str(staging))  # the folder's own scheduler, for the card
        sampler = load_text_to_image_pipeline(str(staging), "dpm++").to(resolve_device(device))
        prompts = [caption(d, "a handwritten digit {word}") for d in range(10)]
        guidance = card_guidance(metrics)  # the card's recommendation, as its example and the Hub widget use it
        rows = [generate_from_prompts(sampler, prompts, 1, 25, guidance, seed=seed) for seed in range(seeds)]
        save_grid(torch.cat(rows), staging / "samples.png", cols=10)
        _vae_card(staging / "vae", Path(vae_run) if vae_run else None, vae_metrics, f"{load_path}/vae", license,
                  dataset_id).save(staging / "vae" / "README.md")
        card = _text_to_image_card(pipe, record, metrics, sweep, load_path, license, dataset_id, output.name,
                                   robustness, ladder)
        card.save(staging / "README.md")

    return _atomic_export(output, write, "text-to-image", run)


