"""Where a model runs: ``--device auto|cpu|cuda|mps`` for every command that runs a model.

``auto`` takes a CUDA GPU when torch sees one, then Apple's ``mps``, then the CPU. Training does not use this: it
runs where accelerate puts it (``accelerate config`` / ``accelerate launch``).
"""

from __future__ import annotations

import argparse

import torch

from sd_course.core.errors import InputError

DEVICES = ("auto", "cpu", "cuda", "mps")


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(device: str | None) -> torch.device:
    """``"auto"`` (or None) -> a CUDA GPU when there is one, else ``mps``, else the CPU; any other name is checked
    by torch and must be present. Samples from one seed match across devices up to float rounding (the noise is
    always drawn on the CPU)."""
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if mps_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as e:
        raise InputError(f"--device {device!r} is not a device torch knows ({e}); use auto, cpu, cuda or mps") from e
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {device!r}: this torch sees no CUDA GPU; use --device cpu (or auto). (A CPU build "
                         "of torch, or no driver: README.md says how to install the CUDA build)")
    if resolved.type == "mps" and not mps_available():
        raise InputError(f"--device {device!r}: Apple's mps backend is not available here (it needs Apple silicon "
                         "and macOS 12.3+); use --device cpu (or auto)")
    if resolved.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"--device {device!r}: sd_course runs on cpu, cuda or mps; use one of {list(DEVICES)}")
    return resolved


def device_argument(text: str) -> str:
    """``type=`` of a script's ``--device`` flag: a device this machine lacks is one argparse line (exit 2) before
    any work, not a traceback after it. Returns the name as given (``auto`` stays ``auto``)."""
    try:
        resolve_device(text)
    except InputError as e:
        message = str(e).removeprefix(f"--device {text!r}").removeprefix(":").strip()
        raise argparse.ArgumentTypeError(f"{text!r} {message}" if message.startswith("is ") else message) from None
    return text
