"""The training configuration: one dataclass whose fields are the flags, a YAML ``--config`` for the defaults.

    python training/train_unconditional.py --config training/configs/mnist.yaml --num_epochs 2 --help

:class:`TrainConfig` holds what every objective shares; each objective subclasses it for its own flags
(``sd_course/pixel/diffusion.py``: ``DiffusionConfig``, ...). :func:`option` declares a field with its ``--help``
text, so the dataclass is the single source of the command line, the YAML recipes and ``training_config.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import yaml

from sd_course.core.errors import InputError
from sd_course.core.shipped import SOURCE_ROOT

MIXED_PRECISION = ("auto", "no", "bf16", "fp16")


LR_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup")


LOGGERS = ("tensorboard", "none")


def option(default, help, **kw):
    """A config field with its --help text (and ``choices``): the dataclass is the single source of the flags."""
    return field(default=default, metadata=dict(help=help, **kw))


@dataclass
class TrainConfig:
    """The flags every objective shares. Objectives subclass it to add their own (diffusion.DiffusionConfig, ...)."""

    # --- data (sd_course/core/data.py) -------------------------------------------------------------------------------
    dataset_name: Optional[str] = option(None, "Hub id, local parquet folder or save_to_disk folder "
                                               "(default: the 2,000 MNIST digits shipped with the package)")
    dataset_config_name: Optional[str] = option(None, "config name of a Hub dataset, if it has several")
    train_data_dir: Optional[str] = option(None, "a folder of image files instead of --dataset_name")
    split: str = option("train", "dataset split to train on")
    image_column: Optional[str] = option(None, "column holding the images (default: 'image' or 'img')")
    image_mode: Optional[str] = option(None, "force 'L' (1 channel) or 'RGB' (3); default: as the data is")
    resolution: int = option(28, "images are resized (or padded) to resolution x resolution")
    resize_mode: str = option("resize", "how other sizes are brought to --resolution",
                              choices=("resize", "pad", "center_crop"))
    random_flip: bool = option(False, "flip images left-right at random (off for digits)")
    max_train_samples: Optional[int] = option(None, "use only the first N images (quick runs)")
    cache_dir: Optional[str] = option(None, "where datasets caches downloads")
    dataloader_num_workers: int = option(0, "DataLoader workers (0: the data is already decoded in memory)")
    # --- optimisation -------------------------------------------------------------------------------------------
    train_batch_size: int = option(64, "images per process per step")
    eval_batch_size: int = option(16, "images in each sample grid")
    num_epochs: int = option(10, "passes over the data (ignored when --max_train_steps is set)")
    max_train_steps: Optional[int] = option(None, "total optimisation steps (overrides --num_epochs)")
    gradient_accumulation_steps: int = option(1, "micro-batches per optimisation step")
    learning_rate: float = option(2e-4, "peak learning rate of AdamW")
    lr_scheduler: str = option("cosine", "learning-rate schedule after warm-up", choices=LR_SCHEDULERS)
    lr_warmup_steps: int = option(100, "linear warm-up steps")
    adam_beta1: float = option(0.95, "AdamW beta1 (diffusers' example uses 0.95)")
    adam_beta2: float = option(0.999, "AdamW beta2")
    adam_weight_decay: float = option(1e-6, "AdamW weight decay")
    adam_epsilon: float = option(1e-8, "AdamW epsilon")
    max_grad_norm: float = option(1.0, "gradient clipping (L2 norm)")
    mixed_precision: str = option("no", "autocast precision: auto (bf16 where the hardware computes it natively: CPUs "
                                        "with AMX or AVX512-BF16, GPUs with bf16; else fp32), no (fp32), bf16, fp16",
                                  choices=MIXED_PRECISION)
    use_ema: bool = option(False, "keep an exponential moving average of the weights; the saved model holds it")
    ema_max_decay: float = option(0.9999, "upper bound of the EMA decay")
    ema_inv_gamma: float = option(1.0, "EMA warm-up: decay = 1 - (1 + step / inv_gamma) ** -power")
    ema_power: float = option(0.75, "EMA warm-up power (3/4: for runs of ~10k steps)")
    seed: int = option(0, "seed of everything random")
    # --- output ---------------------------------------------------------------------------------------------------
    output_dir: str = option("runs/ddpm", "where the model, checkpoints, samples and logs go")
    overwrite_output_dir: bool = option(False, "allow replacing a different run in --output_dir")
    save_images_epochs: int = option(1, "save a sample grid every N epochs")
    save_model_epochs: int = option(1, "save a snapshot output_dir/epoch-XXXX every N epochs (0: never)")
    checkpointing_steps: int = option(500, "save an accelerate checkpoint every N steps (0: never)")
    checkpoints_total_limit: Optional[int] = option(3, "keep at most N checkpoints")
    resume_from_checkpoint: Optional[str] = option(None, "'latest' or a checkpoint folder to continue from")
    logger: str = option("tensorboard", "also log to TensorBoard when it is installed", choices=LOGGERS)
    logging_dir: str = option("logs", "log folder, relative to --output_dir")
    # --- evaluation during training (wired by the training/ entry points; see sd_course/evaluate/metrics.py) ---------------
    eval_epochs: int = option(0, "compute metrics every N epochs (0: never)")
    eval_samples: int = option(500, "samples per evaluation")
    eval_reference: str = option("ylecun/mnist:test", "reference images for the metrics (NAME_OR_PATH[:split])")
    # --- the Hub (sd_course/publish/hub.py), as in diffusers' examples -------------------------------------------------------
    push_to_hub: bool = option(False, "upload the final model, its card and samples to the Hub at the end")
    hub_model_id: Optional[str] = option(None, "the Hub repo to push to (default: the --output_dir name)")
    hub_token: Optional[str] = option(None, "a Hub token (prefer HF_TOKEN or `hf auth login`: a flag is visible "
                                            "to other users of the machine)")
    hub_private_repo: bool = option(False, "create the Hub repo as private")
    # --- the record (set by parse_args from --config, not a flag of its own) ------------------------------------------
    config: Optional[str] = option(None, "the YAML recipe (--config) the run was started with, repo-relative when it "
                                         "is in the repo: what its model card's reproduce command names")

    POSITIVE = ("resolution", "train_batch_size", "eval_batch_size", "gradient_accumulation_steps", "num_epochs")
    POSITIVE_OR_NONE = ("max_train_steps", "max_train_samples", "checkpoints_total_limit")
    NON_NEGATIVE = ("save_images_epochs", "save_model_epochs", "checkpointing_steps", "eval_epochs", "lr_warmup_steps")

    def validate(self) -> None:
        """Every value checked before anything is loaded: a typo fails in a millisecond, not after an hour."""
        for name in self.POSITIVE:
            if getattr(self, name) <= 0:
                raise InputError(f"--{name} must be positive, got {getattr(self, name)}")
        for name in self.POSITIVE_OR_NONE:
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise InputError(f"--{name} must be positive, got {getattr(self, name)}")
        for name in self.NON_NEGATIVE:
            if getattr(self, name) < 0:
                raise InputError(f"--{name} must be >= 0, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise InputError(f"--learning_rate must be positive, got {self.learning_rate}")
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise InputError(f"--{f.name} {getattr(self, f.name)!r} is not one of {list(choices)}")


def build_parser(config_class=TrainConfig, prog: str = "train.py", description: str = "") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--config", help="YAML file of defaults (e.g. training/configs/mnist.yaml)")
    for f in dataclasses.fields(config_class):
        if f.name == "config":  # the record of --config (above), not a flag of its own
            continue
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        kw = dict(default=f.default, help=f.metadata["help"])
        if "choices" in f.metadata:
            kw["choices"] = f.metadata["choices"]
        if kind == "bool":
            parser.add_argument(f"--{f.name}", action=argparse.BooleanOptionalAction, **kw)
        elif kind.startswith("list") or kind.startswith("Optional[list"):
            parser.add_argument(f"--{f.name}", nargs="+", **kw)
        else:
            caster = {"int": int, "float": float}.get(kind.replace("Optional[", "").rstrip("]"), str)
            parser.add_argument(f"--{f.name}", type=caster, **kw)
    return parser


def parse_args(argv=None, config_class=TrainConfig, prog: str = "train.py", description: str = ""):
    """The flags (``--config``: a YAML file of defaults) -> ``config_class``. Its ``config`` records the recipe: the
    ``--config`` path (see :func:`recipe_path`), or, for a run's own ``training_config.json`` given as ``--config``
    (``sd-course train --config runs/x/training_config.json``), the recipe that file recorded."""
    parser = build_parser(config_class, prog, description)
    pre, _ = parser.parse_known_args(argv)
    recipe = None
    if pre.config:
        values = load_yaml_config(pre.config, config_class)
        recipe = values.pop("config", None) or recipe_path(pre.config)
        parser.set_defaults(**values)
    args = vars(parser.parse_args(argv))
    args["config"] = recipe
    return config_class(**args)


def recipe_path(path: str) -> str:
    """How a run records its ``--config``: relative to the sd_course checkout when the file is inside it
    (``training/configs/mini-sd-mnist.yaml``, whatever the working directory), else as given."""
    try:
        return Path(path).expanduser().resolve().relative_to(SOURCE_ROOT).as_posix()
    except ValueError:
        return path


def load_yaml_config(path: str, config_class=TrainConfig) -> dict:
    """The options of a YAML recipe (or of a run's training_config.json: JSON is YAML), refused if one is unknown.
    The ``config`` a training_config.json records is the recipe it came from, not an option: kept, for parse_args."""
    if not Path(path).is_file():
        raise InputError(f"--config {path!r} does not exist; see training/configs/ for the named recipes")
    values = yaml.safe_load(Path(path).read_text()) or {}
    known = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise InputError(f"{path}: unknown option(s) {unknown}; valid options are the flags of --help")
    return values
