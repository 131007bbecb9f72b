"""Shared fixtures: the real MNIST copy beside the repo (tests that need it skip without it) and tiny run flags."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_MNIST = Path(os.environ.get("SD_COURSE_MNIST", REPO.parent / "shared" / "data" / "mnist"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach the Hub
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """A test that changes torch's thread count gives it back: a later test comparing an in-process run with a
    subprocess's (tests/train/test_loop.py's kill-and-resume) needs both to add up floats in the same order."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def mnist_dir() -> Path:
    """The real MNIST parquet folder (../shared/data/mnist); skips the test where it is absent."""
    if not (SHARED_MNIST / "train.parquet").is_file():
        pytest.skip(f"real MNIST not found at {SHARED_MNIST} (set SD_COURSE_MNIST to a folder with train.parquet)")
    return SHARED_MNIST


def tiny_run_values(output_dir, **overrides) -> dict:
    """The flags of a tiny, fast training run (tiny U-Net, 16x16, few steps) on the package's digits, as a dict."""
    values = dict(
        model_config_name_or_path="tiny", resolution=16, max_train_samples=64, train_batch_size=16,
        max_train_steps=6, ddpm_num_steps=100, ddpm_num_inference_steps=2, eval_batch_size=4,
        learning_rate=1e-3, lr_warmup_steps=0, checkpointing_steps=0, save_model_epochs=0, save_images_epochs=0,
        logger="none", output_dir=str(output_dir),
    )
    values.update(overrides)
    return values


def tiny_run_args(output_dir, **overrides) -> list[str]:
    """:func:`tiny_run_values` as command-line flags."""
    return as_flags(tiny_run_values(output_dir, **overrides))


def as_flags(values: dict) -> list[str]:
    """{name: value} -> command-line flags: True -> --name, False -> --no-name, None -> left out."""
    args = []
    for key, value in values.items():
        if value is True:
            args.append(f"--{key}")
        elif value is False:
            args.append(f"--no-{key}")
        elif value is not None:
            args += [f"--{key}", str(value)]
    return args


def run_python(code_or_args, env=None, timeout=300):
    """Run python in a fresh process (what a user's separate script would be); returns CompletedProcess."""
    import subprocess

    args = code_or_args if isinstance(code_or_args, list) else ["-c", code_or_args]
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=full_env, timeout=timeout,
                          cwd=str(REPO))
