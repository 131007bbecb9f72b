"""The training loop: one accelerate loop for every model of the course, each *objective* plugged into it.

    accelerate launch training/train_unconditional.py --config training/configs/mnist.yaml --output_dir runs/mnist
    accelerate launch training/train_vae.py --config training/configs/vae-mnist.yaml --output_dir runs/vae
    accelerate launch training/train_text_to_image.py --config training/configs/mini-sd-mnist.yaml --output_dir runs/sd
    python training/train_unconditional.py --max_train_steps 200 --output_dir runs/quick     # no launcher needed

What is the same for every model lives here, once: seeds, the data order, AdamW with warm-up + cosine, gradient
accumulation and clipping, bf16 autocast, EMA, checkpoints with exact resume, atomic saves, loss logs, sample grids
and snapshots (the flags: ``sd_course/train/config.py``). What differs is an :class:`Objective`, written in the
folder of its course part; it says only what is its own:

    sd_course/pixel/diffusion.py       pixel diffusion  batch = images; loss = || v - v_theta(x_t, t) ||^2;  DDPMPipeline
    sd_course/latent/autoencoder.py    the VAE          batch = images; loss = reconstruction + beta KL;     AutoencoderKL
    sd_course/latent/text_to_image.py  mini SD          batch = latents + captions; loss as diffusion;      StableDiffusionPipeline
    sd_course/gan/dcgan.py             the GAN          batch = images; both players' losses;               a generator folder

The loop knows no objective, no metric and no Hub: it is handed an objective and, optionally, an ``evaluate``
callback (``sd_course/app/launch.py`` composes the three for the ``training/*.py`` entry points).

The run is reproducible: the same ``--seed`` gives the same weights on a CPU, and a run that is killed and resumed
from a checkpoint ends with exactly the weights of one that never stopped, because every random draw (shuffling,
noise, timesteps, flips, captions) is a function of (seed, epoch or step, process rank) and of nothing else.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import math
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import accelerate
import diffusers
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import ProjectConfiguration, set_seed
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from diffusers.utils import make_image_grid
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from sd_course import __version__
from sd_course.core.checkpoints import (
    LOCK_FILE,
    FolderLock,
    fault,
    follow_umask,
    list_checkpoints,
    prune_checkpoints,
    recover_pipeline,
    replace_dir,
    resolve_checkpoint,
    save_pipeline,
    save_pipeline_snapshot,
)
from sd_course.core.errors import InputError
from sd_course.core.models import count_parameters, use_bmm_attention
from sd_course.train.config import TrainConfig

logger = logging.getLogger("sd_course.train.loop")


class Objective:
    """What one kind of model brings to the loop. Subclasses (one per concept file) implement:

    * ``build(accelerator) -> (dataset, info, model)``: the training data (a torch Dataset whose items have an
      ``"index"``) and the trainable ``torch.nn.Module``. Everything the forward pass needs goes *through* that
      module's ``forward``, so that ``DistributedDataParallel`` can average its gradients.
    * ``loss(model, batch, generator) -> loss``: one micro-batch; every random draw uses ``generator``.
    * ``saveable(model) -> object with save_pretrained``: the folder users load (a pipeline or a single model),
      built from an fp32 copy of the model that holds the EMA weights when ``--use_ema``.
    * ``sample_images(saveable) -> (images, rows)``: the PIL images of the epoch-end grid (``None``: no grid).
    * ``summary(saveable) -> dict``: extra numbers for train_summary.json (optional).
    * ``last_logs``: a dict of extra numbers of the last step, logged beside the loss (optional; the autoencoder
      logs its reconstruction and KL terms).

    The loop sets ``step``, the optimiser steps done so far (restored on resume), before each ``loss``: for terms
    that switch on after a warm-up (the autoencoder's perceptual and adversarial terms).
    """

    name = "train"
    step = 0

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg

    def build(self, accelerator):
        raise NotImplementedError

    def loss(self, model, batch, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def saveable(self, model):
        raise NotImplementedError

    def sample_images(self, saveable):
        return None

    def summary(self, saveable) -> dict:
        return {}


# ----------------------------------------------------------------------------------------------------------------
# Reproducible randomness
# ----------------------------------------------------------------------------------------------------------------


class EpochShuffle(torch.utils.data.Sampler):
    """A random order of the dataset that depends only on (seed, epoch): resuming mid-epoch sees the same order."""

    def __init__(self, num_items: int, seed: int):
        self.num_items, self.seed, self.epoch = num_items, seed, 0

    def set_epoch(self, epoch: int) -> None:  # called by accelerate's DataLoaderShard.set_epoch
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.num_items, generator=generator).tolist())

    def __len__(self):
        return self.num_items


def step_generator(seed: int, rank: int, micro_step: int) -> torch.Generator:
    """The generator for the random draws (noise, timesteps, flips, captions) of one micro-batch on one process."""
    return torch.Generator().manual_seed(hash((seed, rank, micro_step)) % 2**62)


# ----------------------------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------------------------


def check_output_dir(cfg: TrainConfig) -> None:
    """Refuse to train into a folder that holds another run, unless asked to overwrite or resuming it."""
    out = Path(cfg.output_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"--output_dir {out} is a file; pass a folder")
    if not out.is_dir() or not any(p.name != LOCK_FILE for p in out.iterdir()) or cfg.resume_from_checkpoint:
        return
    if not cfg.overwrite_output_dir:
        raise InputError(f"--output_dir {out} already holds files (another run?). Pass --overwrite_output_dir to "
                         "replace it, --resume_from_checkpoint latest to continue it, or choose another folder")


def make_accelerator(cfg: TrainConfig, out: Path):
    """An ``Accelerator`` for this run; on a machine without a GPU it is told to use the CPU, so that
    ``accelerate launch --multi_gpu --num_processes 2`` really trains data-parallel on CPU cores (gloo)."""
    use_cpu = not (torch.cuda.is_available() or torch.backends.mps.is_available())
    log_with = "tensorboard" if cfg.logger == "tensorboard" and _has_tensorboard() else None
    precision = resolve_mixed_precision(cfg.mixed_precision, use_cpu)
    accelerator = Accelerator(
        cpu=use_cpu,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        mixed_precision=precision,
        log_with=log_with,
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / cfg.logging_dir)),
    )
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    logging.getLogger("accelerate").setLevel(logging.WARNING)  # its per-file "saved ..." lines drown the progress bar
    if not accelerator.is_main_process:
        logger.setLevel(logging.WARNING)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if use_cpu and accelerator.num_processes == 1 and torch.get_num_threads() < cores:
        # `accelerate launch` sets OMP_NUM_THREADS=1 for a CPU run unless told otherwise: on 2 cores that halves
        # the speed of a training step (0.52x, benchmarks/README.md).
        logger.warning(f"training on {torch.get_num_threads()} of {cores} CPU cores (OMP_NUM_THREADS="
                       f"{os.environ.get('OMP_NUM_THREADS')}); for full speed launch with "
                       f"`accelerate launch --num_cpu_threads_per_process {cores} ...` or set OMP_NUM_THREADS={cores}")
    if cfg.mixed_precision == "auto":
        logger.info(f"--mixed_precision auto: {precision} on this {'CPU' if use_cpu else 'GPU'} ("
                    + ("native bf16" if precision == "bf16" else "no native bf16: fp32") + ")")
    if use_cpu and cfg.mixed_precision == "bf16" and not cpu_has_native_bf16():
        # Without AVX512-BF16 or AMX, oneDNN emulates bf16 in fp32 and converts every tensor twice: a training
        # step of the `mnist-small` U-Net ran at about a third of its fp32 speed on one such CPU and at a
        # thirteenth on an AVX2-only AMD EPYC (benchmarks/README.md §1 measures both).
        logger.warning("--mixed_precision bf16 on a CPU without native bf16 (AVX512-BF16 or AMX): each step is 3x "
                       "to 13x slower than fp32 (emulated); pass --mixed_precision no or auto")
    return accelerator, log_with


def resolve_mixed_precision(requested: str, use_cpu: bool) -> str:
    """``auto`` -> ``bf16`` where the hardware computes bf16 natively (a CPU with AMX or AVX512-BF16: 1.5-2.2x the
    fp32 speed; a CUDA GPU that supports bf16), else ``no`` (fp32: emulated bf16 is 3x to 13x slower, benchmarks/README.md
    §1). Other values as given."""
    if requested != "auto":
        return requested
    if use_cpu:
        return "bf16" if cpu_has_native_bf16() else "no"
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "no"
    return "no"  # Apple's mps: fp32 (bf16 autocast there is neither reliably supported nor measured here)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AVX512-BF16 or AMX tiles), i.e. whether bf16 autocast speeds
    a CPU run up rather than slowing it down."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # an older torch without the probes: assume yes, as it did before they existed
        return True


def train(cfg: TrainConfig, objective: Objective, evaluate: Optional[Callable] = None) -> Path:
    """Train ``objective`` (built from ``cfg``); returns the output folder (a diffusers pipeline or model folder).
    ``evaluate(saveable) -> dict`` runs every ``cfg.eval_epochs`` epochs and its numbers go to the logs
    (``sd_course/app/launch.py`` passes the metrics evaluator; the loop knows nothing of metrics).

    The output folder is locked for the whole run (:class:`FolderLock`, by the main process): a second training,
    resume, export or push of it is refused with this run's PID."""
    cfg.validate()
    check_output_dir(cfg)
    main_process = int(os.environ.get("RANK", "0")) == 0
    with FolderLock(cfg.output_dir, "training") if main_process else contextlib.nullcontext():
        return _train(cfg, objective, evaluate)


def _redirect_output(path: Path) -> Path:
    """Send this process's stdout and stderr (file descriptors 1 and 2, so tqdm, logging and C libraries alike) to
    ``path``: the pipe they wrote to has no reader any more, and a write to it would end the process mid-save."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
    for stream, number in ((sys.stdout, 1), (sys.stderr, 2)):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):
            pass
        os.dup2(fd, number)
    os.close(fd)
    return path


def launcher_pid() -> Optional[int]:
    """The PID of ``accelerate launch`` (or torchrun) when this process is its child, else None."""
    launched = "ACCELERATE_MIXED_PRECISION" in os.environ or "LOCAL_RANK" in os.environ
    return os.getppid() if launched else None


def _train(cfg: TrainConfig, objective: Objective, evaluate: Optional[Callable]) -> Path:
    out = Path(cfg.output_dir)
    launcher = launcher_pid()
    resume_path = resolve_checkpoint(out, cfg.resume_from_checkpoint) if cfg.resume_from_checkpoint else None
    accelerator, log_with = make_accelerator(cfg, out)
    if cfg.overwrite_output_dir and not cfg.resume_from_checkpoint and accelerator.is_main_process:
        _clear_previous_run(out)
    accelerator.wait_for_everyone()

    # ---- data and model (the objective's), optimiser and schedule (shared) -------------------------------------------
    set_seed(cfg.seed)  # the initial weights depend on the seed only
    dataset, info, model = objective.build(accelerator)
    if accelerator.device.type == "cpu":
        use_bmm_attention(model)  # the fused CPU attention kernel is slow to train in bf16 (core/models.py)
    ema = None
    if cfg.use_ema:
        # foreach: one fused update over all tensors instead of a Python loop over ~200 of them (same arithmetic,
        # ~600 fewer kernel launches a step: launches are what a small U-Net's GPU step is made of, benchmarks §13)
        ema = EMAModel(model.parameters(), decay=cfg.ema_max_decay, use_ema_warmup=True, inv_gamma=cfg.ema_inv_gamma,
                       power=cfg.ema_power, foreach=True)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.learning_rate,
                                  betas=(cfg.adam_beta1, cfg.adam_beta2), weight_decay=cfg.adam_weight_decay,
                                  eps=cfg.adam_epsilon)
    sampler = EpochShuffle(len(dataset), cfg.seed)
    loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.train_batch_size, sampler=sampler,
                                         num_workers=cfg.dataloader_num_workers, drop_last=False,
                                         collate_fn=getattr(dataset, "collate", None))  # None: torch's default
    # Steps are counted per process after sharding: each of N processes sees 1/N of the batches of an epoch.
    per_process_batches = math.ceil(len(dataset) / (cfg.train_batch_size * accelerator.num_processes))
    steps_per_epoch = math.ceil(per_process_batches / cfg.gradient_accumulation_steps)
    max_steps = cfg.max_train_steps or cfg.num_epochs * steps_per_epoch
    num_epochs = math.ceil(max_steps / steps_per_epoch)
    # accelerate steps a prepared LR scheduler once per process at every optimiser step, hence the factor.
    lr_scheduler = get_scheduler(cfg.lr_scheduler, optimizer=optimizer,
                                 num_warmup_steps=cfg.lr_warmup_steps * accelerator.num_processes,
                                 num_training_steps=max_steps * accelerator.num_processes)
    model, optimizer, loader, lr_scheduler = accelerator.prepare(model, optimizer, loader, lr_scheduler)
    if ema is not None:
        ema.to(accelerator.device)  # the averaged weights live beside the trained ones (the GPU, when there is one)
    _register_ema_checkpointing(accelerator, ema, accelerator.unwrap_model(model))

    # ---- resume ---------------------------------------------------------------------------------------------------
    global_step = _resume(accelerator, resume_path) if resume_path is not None else 0
    if cfg.resume_from_checkpoint and resume_path is None:
        logger.info(f"no checkpoint in {out} yet: starting a new run")
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        recover_pipeline(out)
        config = _public_config(cfg)
        if resume_path is not None and config.get("config") is None:  # resumed without --config: same recipe
            config["config"] = _recorded_recipe(out / "training_config.json")
        (out / "training_config.json").write_text(json.dumps(config, indent=2))
        _truncate_log(out / cfg.logging_dir / "loss.jsonl", global_step)
    if log_with:
        accelerator.init_trackers(objective.name, config=_flat_config(cfg))

    n_params = count_parameters(accelerator.unwrap_model(model))
    total_batch = cfg.train_batch_size * accelerator.num_processes * cfg.gradient_accumulation_steps
    logger.info(f"{objective.name}: {len(dataset)} training items ({info}), {n_params / 1e6:.2f}M parameters, "
                f"{accelerator.num_processes} process(es), batch {total_batch}, {steps_per_epoch} steps/epoch, "
                f"{max_steps} steps ({num_epochs} epochs)")

    def saveable():
        """What users load: built from an fp32 copy holding the EMA weights if --use_ema, else the trained ones."""
        trained = accelerator.unwrap_model(model)
        if ema is not None:
            trained = copy.deepcopy(trained)
            ema.copy_to(trained.parameters())
        return objective.saveable(trained)

    # ---- the loop ------------------------------------------------------------------------------------------------
    first_epoch, skip = divmod(global_step, steps_per_epoch)
    rank = accelerator.process_index
    progress = tqdm(total=max_steps, initial=global_step, desc=objective.name,
                    disable=not accelerator.is_local_main_process)
    seen_first_epoch = []  # data indices each process saw in epoch 0 (written to train_summary.json)
    start_time, start_step, images_done = time.time(), global_step, 0
    # The training clock: time spent in optimisation steps only (not grids, snapshots or metrics), carried over a
    # resume, so that "quality against minutes of training" can be read off the logs (benchmarks/recipe_sweep.py).
    train_seconds = _last_train_seconds(out / cfg.logging_dir / "loss.jsonl") if global_step else 0.0
    tick = time.time()
    loss_value = float("nan")
    for epoch in range(first_epoch, num_epochs):
        model.train()
        loader.set_epoch(epoch)  # -> EpochShuffle.set_epoch: this epoch's order
        batches = accelerator.skip_first_batches(loader, skip * cfg.gradient_accumulation_steps) if skip else loader
        micro_step = (epoch * steps_per_epoch + skip) * cfg.gradient_accumulation_steps
        skip = 0
        for batch in batches:
            g = step_generator(cfg.seed, rank, micro_step)
            micro_step += 1
            if epoch == 0:
                seen_first_epoch.append(accelerator.gather(batch["index"]).view(accelerator.num_processes, -1))

            with accelerator.accumulate(model):
                objective.step = global_step
                loss = objective.loss(model, batch, g)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad()
            images_done += len(batch["index"]) * accelerator.num_processes

            if not accelerator.sync_gradients:
                continue
            # ---- one optimisation step is done --------------------------------------------------------------------
            if ema is not None:
                ema.step(model.parameters())
            global_step += 1
            loss_value = accelerator.gather(loss.detach()).mean().item()
            record = {"step": global_step, "epoch": epoch, "loss": loss_value, "lr": lr_scheduler.get_last_lr()[0],
                      "train_seconds": round(train_seconds + time.time() - tick, 3)}
            record.update(getattr(objective, "last_logs", {}))  # e.g. the autoencoder's reconstruction and KL terms
            if ema is not None:
                record["ema_decay"] = ema.cur_decay_value
            if accelerator.is_main_process:
                _append_jsonl(out / cfg.logging_dir / "loss.jsonl", record)
            try:
                progress.update(1)
                progress.set_postfix(loss=f"{loss_value:.4f}", lr=f"{record['lr']:.2e}")
                orphaned = launcher is not None and os.getppid() != launcher
            except BrokenPipeError:  # whoever read our output is gone: `accelerate launch` pipes it and was killed
                orphaned = True
            if log_with:
                accelerator.log({k: v for k, v in record.items() if k != "step"}, step=global_step)
            if orphaned:
                # The launcher died (kill -9 of `accelerate launch`): nobody would see this run's output or errors.
                # Leave a checkpoint of this very step, consistent, and stop: resume it with --resume_from_checkpoint.
                log = _redirect_output(out / cfg.logging_dir / "orphaned.log")
                _save_checkpoint(accelerator, out, global_step, epoch, cfg.checkpoints_total_limit)
                logger.error(f"the launcher (PID {launcher}) is gone: saved checkpoint-{global_step} and stopped; "
                             f"continue with --resume_from_checkpoint latest (this message: {log})")
                raise SystemExit(3)
            if cfg.checkpointing_steps and global_step % cfg.checkpointing_steps == 0:
                _save_checkpoint(accelerator, out, global_step, epoch, cfg.checkpoints_total_limit)
            fault(f"step:{global_step}")
            if global_step >= max_steps:
                break

        # ---- end of an epoch: pictures, snapshots, metrics ---------------------------------------------------------
        done = epoch + 1
        last = global_step >= max_steps
        train_seconds += time.time() - tick
        if accelerator.is_main_process:
            _end_of_epoch(cfg, objective, out, saveable, evaluate, accelerator if log_with else None,
                          done=done, last=last, global_step=global_step, train_seconds=train_seconds)
        accelerator.wait_for_everyone()
        tick = time.time()
        if last:
            break
    progress.close()
    loop_seconds = time.time() - start_time  # training only (with the epoch-end grids/snapshots), not the final save

    # ---- the final model and a summary --------------------------------------------------------------------------------
    checksum = torch.stack([p.detach().double().sum() for p in accelerator.unwrap_model(model).parameters()]).sum()
    checksums = accelerator.gather(checksum.reshape(1).to(accelerator.device)).tolist()
    if accelerator.is_main_process:
        final = saveable()
        if cfg.save_model_epochs:
            save_pipeline_snapshot(final, out / f"epoch-{num_epochs:04d}")
        save_pipeline(final, out)
        elapsed = time.time() - start_time
        summary = {
            "objective": objective.name,
            "global_step": global_step, "epochs": num_epochs, "final_loss": loss_value,
            "num_images": info.num_images, "num_parameters": n_params, "num_processes": accelerator.num_processes,
            "mixed_precision": accelerator.mixed_precision, "wall_clock_s": round(elapsed, 2),
            "resumed_from_step": start_step or None,  # wall_clock_s covers this last session only
            "train_seconds": round(train_seconds, 2),
            "images_per_s": round(images_done / loop_seconds, 2) if global_step > start_step else None,
            "hardware": describe_hardware(accelerator.device), "software": describe_software(),
            "param_checksum_per_process": checksums,
            **_first_epoch_coverage(seen_first_epoch, accelerator.num_processes),
            **objective.summary(final),
        }
        (out / "train_summary.json").write_text(json.dumps(summary, indent=2))
        logger.info(f"saved {type(final).__name__} to {out} ({global_step} steps, {elapsed:.0f} s)")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    if accelerator.num_processes == 1:
        # Accelerate keeps one global state per process; forget it so that a notebook (or a benchmark) can call
        # train() again with other settings, e.g. another --mixed_precision.
        AcceleratorState._reset_state(reset_partial_state=True)
    return out


# ----------------------------------------------------------------------------------------------------------------
# Helpers of the loop
# ----------------------------------------------------------------------------------------------------------------

EMA_WEIGHTS, EMA_STATE = "ema.safetensors", "ema_state.json"


def _resume(accelerator, resume_path: Path) -> int:
    """Load a checkpoint folder (model, optimiser, LR schedule, RNG states, EMA) and return its optimisation step.

    The model and EMA weights are safetensors; accelerate reads its other files (optimizer.bin, scheduler.bin,
    random_states_*.pkl) with ``torch.load(weights_only=True)``, which rebuilds tensors and plain containers only and
    refuses any other object, so a checkpoint from elsewhere cannot run code (tests/train/test_loop.py)."""
    logger.info(f"resuming from {resume_path}")
    try:
        accelerator.load_state(str(resume_path))
    except Exception as e:
        first = (str(e).strip().splitlines() or [""])[0]
        raise InputError(f"checkpoint {resume_path} could not be loaded ({type(e).__name__}: {first}); it is corrupt, "
                         "from a different model, or holds more than tensors: delete it or start without "
                         "--resume_from_checkpoint") from e
    return json.loads((resume_path / "training_state.json").read_text())["global_step"]


def _end_of_epoch(cfg: TrainConfig, objective: Objective, out: Path, saveable: Callable, evaluate: Optional[Callable],
                  tracker, *, done: int, last: bool, global_step: int, train_seconds: float) -> None:
    """What the main process does after epoch ``done``: a sample grid, a pipeline snapshot (the epoch ladder) and
    the metrics, each every N epochs as configured. ``tracker`` is the accelerator when --report_to is on."""
    if cfg.save_images_epochs and (done % cfg.save_images_epochs == 0 or last):
        grid = objective.sample_images(saveable())
        if grid is not None:
            images, rows = grid
            image = make_image_grid(images, rows=rows, cols=len(images) // rows)
            (out / "samples").mkdir(parents=True, exist_ok=True)
            image.resize((image.width * 4, image.height * 4), 0).save(out / "samples" / f"epoch-{done:04d}.png")
    if cfg.save_model_epochs and done % cfg.save_model_epochs == 0 and not last:
        save_pipeline_snapshot(saveable(), out / f"epoch-{done:04d}")
    if evaluate is not None and cfg.eval_epochs and (done % cfg.eval_epochs == 0 or last):
        metrics = evaluate(saveable())
        logger.info(f"epoch {done}: {metrics}")
        _append_jsonl(out / cfg.logging_dir / "eval.jsonl",
                      {"step": global_step, "epoch": done, "train_seconds": round(train_seconds, 3), **metrics})
        if tracker is not None:
            tracker.log({f"eval/{k}": v for k, v in metrics.items()}, step=global_step)


def _first_epoch_coverage(seen_first_epoch: list, num_processes: int) -> dict:
    """How the first epoch's data was sharded: items per process, and items that several processes saw (0 when the
    sampler and accelerate's sharding agree; tests/train/test_loop.py checks it with 2 processes)."""
    seen = torch.cat(seen_first_epoch, dim=1) if seen_first_epoch else torch.zeros(num_processes, 0)
    per_rank = [set(row.tolist()) for row in seen]
    return {"first_epoch_samples_per_process": [len(s) for s in per_rank],
            "first_epoch_samples_seen_by_several_processes": len(set.intersection(*per_rank)) if len(per_rank) > 1 else 0}


def _register_ema_checkpointing(accelerator, ema, model) -> None:
    """Save the EMA weights inside each checkpoint (``ema.safetensors``, by parameter name, + its counters in
    ``ema_state.json``), and load them back on resume. Works for any module, whatever the objective."""
    if ema is None:
        return
    names = [name for name, _ in model.named_parameters()]

    def save_hook(models, weights, output_dir):
        if accelerator.is_main_process:
            state = ema.state_dict()
            shadow = state.pop("shadow_params")
            save_file({n: p.detach().contiguous().cpu() for n, p in zip(names, shadow)},
                      str(Path(output_dir) / EMA_WEIGHTS))
            (Path(output_dir) / EMA_STATE).write_text(json.dumps(state))

    def load_hook(models, input_dir):
        path = Path(input_dir)
        if not (path / EMA_WEIGHTS).is_file():
            raise InputError(f"{input_dir} has no {EMA_WEIGHTS} (saved without --use_ema?); resume with the same flags")
        weights = load_file(str(path / EMA_WEIGHTS))
        state = json.loads((path / EMA_STATE).read_text())
        ema.load_state_dict({**state, "shadow_params": [weights[n] for n in names]})
        ema.to(accelerator.device)  # loaded on the CPU; the update needs them beside the weights

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)


def _save_checkpoint(accelerator, out: Path, step: int, epoch: int, keep: Optional[int]) -> None:
    """``accelerator.save_state`` into ``checkpoint-N.tmp``, then rename to ``checkpoint-N`` (atomic)."""
    final, tmp = out / f"checkpoint-{step}", out / f"checkpoint-{step}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))  # model.safetensors, optimizer.bin, scheduler.bin, random_states_*.pkl
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / "training_state.json").write_text(json.dumps({"global_step": step, "epoch": epoch}))
        follow_umask(tmp)
        replace_dir(tmp, final)
        logger.info(f"saved {final.name}")
        if keep is not None:
            for path in prune_checkpoints(out, keep):
                logger.info(f"removed old checkpoint {path.name}")
    accelerator.wait_for_everyone()


def _clear_previous_run(out: Path) -> None:
    """--overwrite_output_dir: drop the old run's checkpoints, snapshots and logs (its model is replaced at the end)."""
    for path in list_checkpoints(out) + sorted(out.glob("epoch-*")) + [out / "samples", out / "logs"]:
        if path.is_dir():
            shutil.rmtree(path)
    for name in ("train_summary.json", "training_config.json"):
        (out / name).unlink(missing_ok=True)


def _append_jsonl(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def describe_hardware(device) -> str:
    """One line on the machine, for summaries and model cards: CPU model, cores, torch threads, GPU if any."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"
    if getattr(device, "type", "cpu") == "cpu":
        text += ", native bf16" if cpu_has_native_bf16() else ", no native bf16"
    if getattr(device, "type", "cpu") == "cuda":
        text = f"{torch.cuda.get_device_name(device)}; {text}"
    return text


def describe_software() -> str:
    return f"torch {torch.__version__}, diffusers {diffusers.__version__}, accelerate {accelerate.__version__}, " \
           f"sd_course {__version__}"


def _last_train_seconds(path: Path) -> float:
    """The training clock of the last logged step (0 for a log without one)."""
    if not path.exists():
        return 0.0
    lines = path.read_text().splitlines()
    return float(json.loads(lines[-1]).get("train_seconds", 0.0)) if lines else 0.0


def _truncate_log(path: Path, step: int) -> None:
    """On resume, drop log lines of steps after the checkpoint (they are trained again)."""
    if path.exists():
        lines = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        path.write_text("".join(line + "\n" for line in lines))


def _has_tensorboard() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def _public_config(cfg: TrainConfig) -> dict:
    """The run's configuration as saved next to it: everything but a Hub token."""
    values = dataclasses.asdict(cfg)
    if values.get("hub_token"):
        values["hub_token"] = "<redacted>"
    return values


def _recorded_recipe(path: Path) -> Optional[str]:
    """The recipe (``config``) an earlier session of the run recorded in its training_config.json, if any."""
    try:
        return json.loads(path.read_text()).get("config")
    except (OSError, ValueError, AttributeError):
        return None


def _flat_config(cfg: TrainConfig) -> dict:
    return {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in _public_config(cfg).items()}


