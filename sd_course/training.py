"""The training loop: teach a U-Net to predict the noise that was added to an image (Ho et al. 2020).

    accelerate launch training/train_unconditional.py --config training/configs/mnist.yaml --output_dir runs/mnist
    python training/train_unconditional.py --max_train_steps 200 --output_dir runs/quick     # no launcher needed
    sd-course train --help                                                                    # every flag

Algorithm 1 of Ho et al. 2020 (training), one optimisation step:

    x_0 ~ data,  t ~ Uniform{0, ..., T-1},  eps ~ N(0, I)
    x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps            # the forward process q(x_t | x_0), in closed form
    loss = || target - model(x_t, t) ||^2                    # target = eps | v | x_0  (--prediction_type)

The flags are those of diffusers' ``examples/unconditional_image_generation/train_unconditional.py`` wherever the
concept is the same, so commands carry over. A YAML ``--config`` supplies defaults; flags on the command line
override it. The run is reproducible: the same ``--seed`` gives the same weights on a CPU, and a run that is killed
and resumed from a checkpoint ends with exactly the weights of one that never stopped, because every random draw
(shuffling, noise, timesteps, flips) is a function of (seed, epoch or step, process rank) and of nothing else.

Q: What does the model actually learn?
A: To undo one small piece of the forward process. With prediction_type "epsilon" the network guesses which noise
   eps was mixed into x_t; since x_t and t are known, that is the same as guessing x_0 (Tweedie's formula:
   E[x_0 | x_t] = (x_t - sqrt(1 - abar_t) E[eps | x_t]) / sqrt(abar_t)). Minimising the squared error makes the
   network's output the *conditional mean* E[eps | x_t] - exactly the Part 1 lesson (sd_course/inversion.py): an
   MSE-trained inverse of a many-to-one map predicts an average. Sampling then takes many small steps, each of which
   is nearly one-to-one, instead of one blurry leap from noise to image.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F
import yaml

from sd_course.checkpoints import (
    fault,
    list_checkpoints,
    prune_checkpoints,
    recover_pipeline,
    replace_dir,
    resolve_checkpoint,
    save_pipeline,
    save_pipeline_snapshot,
)
from sd_course.errors import InputError

logger = logging.getLogger("sd_course.training")

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid")
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
MIXED_PRECISION = ("no", "bf16", "fp16")
LR_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup")
LOGGERS = ("tensorboard", "none")


def _opt(default, help, **kw):
    return field(default=default, metadata=dict(help=help, **kw))


@dataclass
class TrainConfig:
    # --- data (sd_course/data.py) -------------------------------------------------------------------------------
    dataset_name: Optional[str] = _opt(None, "Hub id, local parquet folder or save_to_disk folder "
                                             "(default: the 2,000 MNIST digits shipped with the package)")
    dataset_config_name: Optional[str] = _opt(None, "config name of a Hub dataset, if it has several")
    train_data_dir: Optional[str] = _opt(None, "a folder of image files instead of --dataset_name")
    split: str = _opt("train", "dataset split to train on")
    image_column: Optional[str] = _opt(None, "column holding the images (default: 'image' or 'img')")
    image_mode: Optional[str] = _opt(None, "force 'L' (1 channel) or 'RGB' (3); default: as the data is")
    resolution: int = _opt(28, "images are resized (or padded) to resolution x resolution")
    resize_mode: str = _opt("resize", "how other sizes are brought to --resolution", choices=("resize", "pad", "center_crop"))
    random_flip: bool = _opt(False, "flip images left-right at random (off for digits)")
    max_train_samples: Optional[int] = _opt(None, "use only the first N images (quick runs)")
    cache_dir: Optional[str] = _opt(None, "where datasets caches downloads")
    dataloader_num_workers: int = _opt(0, "DataLoader workers (0: the data is already decoded in memory)")
    # --- model (sd_course/models.py) ----------------------------------------------------------------------------
    model_config_name_or_path: str = _opt("mnist", "U-Net preset (mnist, cifar10, tiny) or a UNet2DModel config.json")
    # --- noise schedule (diffusers.DDPMScheduler) ---------------------------------------------------------------
    ddpm_num_steps: int = _opt(1000, "T, the number of diffusion steps")
    ddpm_beta_schedule: str = _opt("linear", "beta_t schedule", choices=BETA_SCHEDULES)
    prediction_type: str = _opt("epsilon", "what the U-Net predicts", choices=PREDICTION_TYPES)
    ddpm_num_inference_steps: int = _opt(50, "DDIM steps for the sample grids saved during training")
    # --- optimisation -------------------------------------------------------------------------------------------
    train_batch_size: int = _opt(64, "images per process per step")
    eval_batch_size: int = _opt(16, "images in each sample grid")
    num_epochs: int = _opt(10, "passes over the data (ignored when --max_train_steps is set)")
    max_train_steps: Optional[int] = _opt(None, "total optimisation steps (overrides --num_epochs)")
    gradient_accumulation_steps: int = _opt(1, "micro-batches per optimisation step")
    learning_rate: float = _opt(2e-4, "peak learning rate of AdamW")
    lr_scheduler: str = _opt("cosine", "learning-rate schedule after warm-up", choices=LR_SCHEDULERS)
    lr_warmup_steps: int = _opt(100, "linear warm-up steps")
    adam_beta1: float = _opt(0.95, "AdamW beta1 (diffusers' example uses 0.95)")
    adam_beta2: float = _opt(0.999, "AdamW beta2")
    adam_weight_decay: float = _opt(1e-6, "AdamW weight decay")
    adam_epsilon: float = _opt(1e-8, "AdamW epsilon")
    max_grad_norm: float = _opt(1.0, "gradient clipping (L2 norm)")
    mixed_precision: str = _opt("no", "autocast precision (bf16 is fast on recent CPUs)", choices=MIXED_PRECISION)
    use_ema: bool = _opt(False, "keep an exponential moving average of the weights; the saved pipeline holds it")
    ema_max_decay: float = _opt(0.9999, "upper bound of the EMA decay")
    ema_inv_gamma: float = _opt(1.0, "EMA warm-up: decay = 1 - (1 + step / inv_gamma) ** -power")
    ema_power: float = _opt(0.75, "EMA warm-up power (3/4: for runs of ~10k steps)")
    seed: int = _opt(0, "seed of everything random")
    # --- output ---------------------------------------------------------------------------------------------------
    output_dir: str = _opt("runs/ddpm", "where the pipeline, checkpoints, samples and logs go")
    overwrite_output_dir: bool = _opt(False, "allow replacing a different run in --output_dir")
    save_images_epochs: int = _opt(1, "save a sample grid every N epochs")
    save_model_epochs: int = _opt(1, "save a pipeline snapshot output_dir/epoch-XXXX every N epochs (0: never)")
    checkpointing_steps: int = _opt(500, "save an accelerate checkpoint every N steps (0: never)")
    checkpoints_total_limit: Optional[int] = _opt(3, "keep at most N checkpoints")
    resume_from_checkpoint: Optional[str] = _opt(None, "'latest' or a checkpoint folder to continue from")
    logger: str = _opt("tensorboard", "also log to TensorBoard when it is installed", choices=LOGGERS)
    logging_dir: str = _opt("logs", "log folder, relative to --output_dir")
    # --- evaluation during training (wired by training/train_unconditional.py; see sd_course/metrics.py) ---------
    eval_epochs: int = _opt(0, "compute metrics every N epochs (0: never)")
    eval_samples: int = _opt(500, "samples per evaluation")
    eval_reference: str = _opt("ylecun/mnist:test", "reference images for the metrics (NAME_OR_PATH[:split])")

    def validate(self) -> None:
        for name in ("resolution", "train_batch_size", "eval_batch_size", "gradient_accumulation_steps",
                     "ddpm_num_steps", "ddpm_num_inference_steps", "num_epochs"):
            if getattr(self, name) <= 0:
                raise InputError(f"--{name} must be positive, got {getattr(self, name)}")
        for name in ("max_train_steps", "max_train_samples", "checkpoints_total_limit"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise InputError(f"--{name} must be positive, got {getattr(self, name)}")
        for name in ("save_images_epochs", "save_model_epochs", "checkpointing_steps", "eval_epochs", "lr_warmup_steps"):
            if getattr(self, name) < 0:
                raise InputError(f"--{name} must be >= 0, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise InputError(f"--learning_rate must be positive, got {self.learning_rate}")
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise InputError(f"--{f.name} {getattr(self, f.name)!r} is not one of {list(choices)}")


# ----------------------------------------------------------------------------------------------------------------
# Command line: a YAML --config gives defaults, flags override
# ----------------------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="train_unconditional.py", description="Train an unconditional DDPM (sd_course).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--config", help="YAML file of defaults (e.g. training/configs/mnist.yaml)")
    for f in dataclasses.fields(TrainConfig):
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        kw = dict(default=f.default, help=f.metadata["help"])
        if "choices" in f.metadata:
            kw["choices"] = f.metadata["choices"]
        if kind == "bool":
            parser.add_argument(f"--{f.name}", action=argparse.BooleanOptionalAction, **kw)
        else:
            caster = {"int": int, "float": float}.get(kind.replace("Optional[", "").rstrip("]"), str)
            parser.add_argument(f"--{f.name}", type=caster, **kw)
    return parser


def parse_args(argv=None) -> TrainConfig:
    parser = build_parser()
    pre, _ = parser.parse_known_args(argv)
    if pre.config:
        parser.set_defaults(**load_yaml_config(pre.config))
    args = vars(parser.parse_args(argv))
    args.pop("config")
    return TrainConfig(**args)


def load_yaml_config(path: str) -> dict:
    if not Path(path).is_file():
        raise InputError(f"--config {path!r} does not exist; see training/configs/ for the named recipes")
    values = yaml.safe_load(Path(path).read_text()) or {}
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise InputError(f"{path}: unknown option(s) {unknown}; valid options are the flags of --help")
    return values


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
    """The generator for the noise, timesteps and flips of one micro-batch on one process."""
    return torch.Generator().manual_seed(hash((seed, rank, micro_step)) % 2**62)


# ----------------------------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------------------------


def training_target(noise_scheduler, x0, noise, timesteps):
    """What the network is trained to output, for each ``prediction_type``."""
    kind = noise_scheduler.config.prediction_type
    if kind == "epsilon":
        return noise  # eps
    if kind == "v_prediction":
        return noise_scheduler.get_velocity(x0, noise, timesteps)  # v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0
    return x0  # "sample": predict x_0 directly


def check_output_dir(cfg: TrainConfig) -> None:
    """Refuse to train into a folder that holds another run, unless asked to overwrite or resuming it."""
    out = Path(cfg.output_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"--output_dir {out} is a file; pass a folder")
    if not out.is_dir() or not any(out.iterdir()) or cfg.resume_from_checkpoint:
        return
    if not cfg.overwrite_output_dir:
        raise InputError(f"--output_dir {out} already holds files (another run?). Pass --overwrite_output_dir to "
                         "replace it, --resume_from_checkpoint latest to continue it, or choose another folder")


def train(cfg: TrainConfig, evaluate: Optional[Callable] = None) -> Path:
    """Train; returns the output folder (a diffusers pipeline). ``evaluate(pipeline) -> dict`` runs every
    ``cfg.eval_epochs`` epochs, its numbers go to the logs (``training/train_unconditional.py`` passes
    ``sd_course.metrics.make_evaluator``; the loop itself knows nothing of metrics)."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed
    from diffusers import DDIMScheduler, DDPMPipeline, DDPMScheduler, UNet2DModel
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel
    from diffusers.utils import make_image_grid
    from tqdm.auto import tqdm

    from sd_course.data import load_train_dataset, random_flip
    from sd_course.models import build_unet, count_parameters

    cfg.validate()
    check_output_dir(cfg)
    out = Path(cfg.output_dir)
    resume_path = resolve_checkpoint(out, cfg.resume_from_checkpoint) if cfg.resume_from_checkpoint else None

    # Accelerate picks multi-process CPU training (gloo) only when told to use the CPU; on a machine without a GPU
    # we tell it, so `accelerate launch --multi_gpu --num_processes 2` really trains data-parallel on CPU cores.
    use_cpu = not (torch.cuda.is_available() or torch.backends.mps.is_available())
    log_with = "tensorboard" if cfg.logger == "tensorboard" and _has_tensorboard() else None
    accelerator = Accelerator(
        cpu=use_cpu,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        mixed_precision=cfg.mixed_precision,
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
    if cfg.overwrite_output_dir and not cfg.resume_from_checkpoint and accelerator.is_main_process:
        _clear_previous_run(out)
    accelerator.wait_for_everyone()

    # ---- data and model ------------------------------------------------------------------------------------------
    with accelerator.main_process_first():
        dataset, info = load_train_dataset(
            cfg.dataset_name, cfg.train_data_dir, cfg.resolution, cfg.split, cfg.image_column, None, cfg.image_mode,
            cfg.resize_mode, cfg.max_train_samples, cfg.dataset_config_name, cfg.cache_dir,
            show_progress=accelerator.is_local_main_process)
    set_seed(cfg.seed)  # the initial weights depend on the seed only
    model = build_unet(cfg.model_config_name_or_path, info.resolution, info.num_channels)
    noise_scheduler = DDPMScheduler(num_train_timesteps=cfg.ddpm_num_steps, beta_schedule=cfg.ddpm_beta_schedule,
                                    prediction_type=cfg.prediction_type)
    ema = None
    if cfg.use_ema:
        ema = EMAModel(model.parameters(), decay=cfg.ema_max_decay, use_ema_warmup=True, inv_gamma=cfg.ema_inv_gamma,
                       power=cfg.ema_power, model_cls=UNet2DModel, model_config=model.config)

    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, betas=(cfg.adam_beta1, cfg.adam_beta2),
                                  weight_decay=cfg.adam_weight_decay, eps=cfg.adam_epsilon)
    sampler = EpochShuffle(len(dataset), cfg.seed)
    loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.train_batch_size, sampler=sampler,
                                         num_workers=cfg.dataloader_num_workers, drop_last=False)
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
    _register_ema_checkpointing(accelerator, ema, UNet2DModel)

    # ---- resume ---------------------------------------------------------------------------------------------------
    global_step = 0
    if resume_path is not None:
        logger.info(f"resuming from {resume_path}")
        try:
            accelerator.load_state(str(resume_path))
        except Exception as e:
            raise InputError(f"checkpoint {resume_path} could not be loaded ({type(e).__name__}: {e}); it is corrupt "
                             "or from a different model: delete it or start without --resume_from_checkpoint") from e
        global_step = json.loads((resume_path / "training_state.json").read_text())["global_step"]
    elif cfg.resume_from_checkpoint:
        logger.info(f"no checkpoint in {out} yet: starting a new run")
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        recover_pipeline(out)
        (out / "training_config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2))
        _truncate_log(out / cfg.logging_dir / "loss.jsonl", global_step)
    if log_with:
        accelerator.init_trackers("train_unconditional", config=_flat_config(cfg))

    n_params = count_parameters(accelerator.unwrap_model(model))
    total_batch = cfg.train_batch_size * accelerator.num_processes * cfg.gradient_accumulation_steps
    logger.info(f"{info.num_images} images {info.num_channels}x{info.resolution}x{info.resolution}, "
                f"{n_params / 1e6:.2f}M parameters, {accelerator.num_processes} process(es), batch {total_batch}, "
                f"{steps_per_epoch} steps/epoch, {max_steps} steps ({num_epochs} epochs)")

    def pipeline_for_saving():
        """A DDPMPipeline holding the EMA weights if --use_ema, else the trained ones (fp32, on the CPU)."""
        unet = accelerator.unwrap_model(model)
        if ema is not None:
            unet = UNet2DModel.from_config(unet.config)
            ema.copy_to(unet.parameters())
        return DDPMPipeline(unet=unet, scheduler=noise_scheduler)

    # ---- the loop ------------------------------------------------------------------------------------------------
    first_epoch, skip = divmod(global_step, steps_per_epoch)
    rank = accelerator.process_index
    progress = tqdm(total=max_steps, initial=global_step, desc="training", disable=not accelerator.is_local_main_process)
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
            x0 = batch["pixel_values"]
            g = step_generator(cfg.seed, rank, micro_step)
            micro_step += 1
            if cfg.random_flip:
                x0 = random_flip(x0, g)
            noise = torch.randn(x0.shape, generator=g).to(x0.device)  # eps ~ N(0, I)
            timesteps = torch.randint(0, cfg.ddpm_num_steps, (x0.shape[0],), generator=g).to(x0.device)  # t ~ U
            noisy = noise_scheduler.add_noise(x0, noise, timesteps)  # x_t = sqrt(abar_t) x_0 + sqrt(1-abar_t) eps
            if epoch == 0:
                seen_first_epoch.append(accelerator.gather(batch["index"]).view(accelerator.num_processes, -1))

            with accelerator.accumulate(model):
                prediction = model(noisy, timesteps).sample
                target = training_target(noise_scheduler, x0, noise, timesteps)
                loss = F.mse_loss(prediction.float(), target.float())  # || target - model(x_t, t) ||^2
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad()
            images_done += x0.shape[0] * accelerator.num_processes

            if not accelerator.sync_gradients:
                continue
            # ---- one optimisation step is done --------------------------------------------------------------------
            if ema is not None:
                ema.step(model.parameters())
            global_step += 1
            loss_value = accelerator.gather(loss.detach()).mean().item()
            record = {"step": global_step, "epoch": epoch, "loss": loss_value, "lr": lr_scheduler.get_last_lr()[0],
                      "train_seconds": round(train_seconds + time.time() - tick, 3)}
            if ema is not None:
                record["ema_decay"] = ema.cur_decay_value
            progress.update(1)
            progress.set_postfix(loss=f"{loss_value:.4f}", lr=f"{record['lr']:.2e}")
            if accelerator.is_main_process:
                _append_jsonl(out / cfg.logging_dir / "loss.jsonl", record)
            if log_with:
                accelerator.log({k: v for k, v in record.items() if k != "step"}, step=global_step)
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
            if cfg.save_images_epochs and (done % cfg.save_images_epochs == 0 or last):
                pipe = pipeline_for_saving()
                pipe.scheduler = DDIMScheduler.from_config(noise_scheduler.config)
                pipe.set_progress_bar_config(disable=True)
                images = pipe(batch_size=cfg.eval_batch_size, num_inference_steps=cfg.ddpm_num_inference_steps,
                              generator=torch.Generator().manual_seed(cfg.seed)).images
                (out / "samples").mkdir(parents=True, exist_ok=True)
                rows = int(math.sqrt(len(images)))
                while len(images) % rows:
                    rows -= 1
                grid = make_image_grid(images, rows=rows, cols=len(images) // rows)
                grid.resize((grid.width * 4, grid.height * 4), 0).save(out / "samples" / f"epoch-{done:04d}.png")
            if cfg.save_model_epochs and done % cfg.save_model_epochs == 0 and not last:
                save_pipeline_snapshot(pipeline_for_saving(), out / f"epoch-{done:04d}")
            if evaluate is not None and cfg.eval_epochs and (done % cfg.eval_epochs == 0 or last):
                metrics = evaluate(pipeline_for_saving())
                logger.info(f"epoch {done}: {metrics}")
                _append_jsonl(out / cfg.logging_dir / "eval.jsonl",
                              {"step": global_step, "epoch": done, "train_seconds": round(train_seconds, 3), **metrics})
                if log_with:
                    accelerator.log({f"eval/{k}": v for k, v in metrics.items()}, step=global_step)
        accelerator.wait_for_everyone()
        tick = time.time()
        if last:
            break
    progress.close()
    loop_seconds = time.time() - start_time  # training only (with the epoch-end grids/snapshots), not the final save

    # ---- the final pipeline and a summary --------------------------------------------------------------------------
    checksum = torch.stack([p.detach().double().sum() for p in accelerator.unwrap_model(model).parameters()]).sum()
    checksums = accelerator.gather(checksum.reshape(1).to(accelerator.device)).tolist()
    if accelerator.is_main_process:
        if cfg.save_model_epochs:
            save_pipeline_snapshot(pipeline_for_saving(), out / f"epoch-{num_epochs:04d}")
        save_pipeline(pipeline_for_saving(), out)
        elapsed = time.time() - start_time
        seen = torch.cat(seen_first_epoch, dim=1) if seen_first_epoch else torch.zeros(accelerator.num_processes, 0)
        per_rank = [set(row.tolist()) for row in seen]
        summary = {
            "global_step": global_step, "epochs": num_epochs, "final_loss": loss_value,
            "num_images": info.num_images, "num_parameters": n_params, "num_processes": accelerator.num_processes,
            "mixed_precision": cfg.mixed_precision, "wall_clock_s": round(elapsed, 2),
            "train_seconds": round(train_seconds, 2),
            "images_per_s": round(images_done / loop_seconds, 2) if global_step > start_step else None,
            "hardware": describe_hardware(accelerator.device), "software": describe_software(),
            "param_checksum_per_process": checksums,
            "first_epoch_samples_per_process": [len(s) for s in per_rank],
            "first_epoch_samples_seen_by_several_processes": len(set.intersection(*per_rank)) if len(per_rank) > 1 else 0,
        }
        (out / "train_summary.json").write_text(json.dumps(summary, indent=2))
        logger.info(f"saved the pipeline to {out} ({global_step} steps, {elapsed:.0f} s)")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    if accelerator.num_processes == 1:
        # Accelerate keeps one global state per process; forget it so that a notebook (or a benchmark) can call
        # train() again with other settings, e.g. another --mixed_precision.
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=True)
    return out


# ----------------------------------------------------------------------------------------------------------------
# Helpers of the loop
# ----------------------------------------------------------------------------------------------------------------


def _register_ema_checkpointing(accelerator, ema, model_cls) -> None:
    """Save the EMA weights inside each checkpoint as ``unet_ema/`` (safetensors), and load them back on resume."""
    if ema is None:
        return

    def save_hook(models, weights, output_dir):
        if accelerator.is_main_process:
            ema.save_pretrained(str(Path(output_dir) / "unet_ema"))

    def load_hook(models, input_dir):
        path = Path(input_dir) / "unet_ema"
        if not path.is_dir():
            raise InputError(f"{input_dir} has no unet_ema/ (saved without --use_ema?); resume with the same flags")
        config = model_cls.load_config(str(path))  # the EMA counters were saved in the model config
        weights = model_cls.from_pretrained(str(path)).parameters()
        state = {k: config[k] for k in ema.state_dict() if k in config}
        ema.load_state_dict({**state, "shadow_params": [p.detach().clone() for p in weights]})

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
        replace_dir(tmp, final)
        logger.info(f"saved {final.name}")
        if keep is not None:
            for path in prune_checkpoints(out, keep):
                logger.info(f"removed old checkpoint {path.name}")
    accelerator.wait_for_everyone()


def _clear_previous_run(out: Path) -> None:
    """--overwrite_output_dir: drop the old run's checkpoints, snapshots and logs (its pipeline is replaced at the end)."""
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
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"
    if getattr(device, "type", "cpu") == "cuda":
        text = f"{torch.cuda.get_device_name(device)}; {text}"
    return text


def describe_software() -> str:
    import accelerate
    import diffusers

    from sd_course import __version__

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


def _flat_config(cfg: TrainConfig) -> dict:
    return {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in dataclasses.asdict(cfg).items()}


def main(argv=None, evaluate_factory: Optional[Callable] = None) -> Path:
    """Parse flags and train. ``evaluate_factory(cfg) -> evaluate`` builds the optional metrics hook."""
    try:
        cfg = parse_args(argv)
        evaluate = evaluate_factory(cfg) if (evaluate_factory and cfg.eval_epochs) else None
        return train(cfg, evaluate)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2)
