"""Files that must never be half-written: training checkpoints and saved pipelines.

The rule: write somewhere else, then *rename* into place. A rename within one file system is atomic, so a crash
(a kill, a full disk, a power cut) leaves either the old good version or the new good version, never a mix.

    output_dir/
        model_index.json, unet/, scheduler/   the final pipeline (loadable with DiffusionPipeline.from_pretrained),
                                              or config.json + weights for a single model (an AutoencoderKL)
        epoch-0001/ ...                       pipeline snapshots (--save_model_epochs)
        checkpoint-500/ ...                   accelerate states to resume from (--checkpointing_steps)
        samples/epoch-0001.png ...            sample grids (--save_images_epochs)
        logs/loss.jsonl                       one line per optimisation step
        training_config.json                  the resolved configuration of the run
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from pathlib import Path

try:
    import fcntl  # POSIX: Linux, macOS (Colab too)
except ImportError:  # Windows: no advisory locks of this kind; the guard below is then a no-op
    fcntl = None

import numpy as np
import torch
from safetensors import safe_open

from sd_course.core.errors import InputError

KEY_FILES = ("config.json", "model_index.json")  # what makes a folder loadable: moved in last, out first
STAGING, BACKUP, COMPLETE = ".pipeline-new", ".pipeline-old", ".complete"
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
REQUIRED_CHECKPOINT_FILES = ("model.safetensors", "optimizer.bin", "scheduler.bin", "training_state.json")


def fault(point: str) -> None:
    """Fault injection for the tests of this module's promise: ``SD_COURSE_FAULT=<point>`` kills the process here.

    Points: ``step:N`` (after optimisation step N), ``pipeline-save`` (pipeline files written, not yet swapped in).
    """
    if os.environ.get("SD_COURSE_FAULT") == point:
        os.kill(os.getpid(), 9)  # SIGKILL: no cleanup, no finally blocks, exactly like `kill -9` or an OOM kill


# ------------------------------------------------------------------------------------------------------------------
# Pipelines
# ------------------------------------------------------------------------------------------------------------------


def save_pipeline(pipeline, target: str | Path, card: str | None = None) -> Path:
    """Save a diffusers pipeline to ``target`` atomically; ``target`` may hold other files (checkpoints, logs).

    1. write the whole pipeline to ``target/.pipeline-new/`` and mark it complete;
    2. move each old entry aside (model_index.json first, so a half-swapped folder is never a loadable pipeline)
       and move each new one in (model_index.json last);
    3. delete the old entries.
    A crash in 1 leaves the old pipeline untouched; a crash in 2 is finished by :func:`recover_pipeline`, which
    every save (and every training run) calls first.
    """
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    recover_pipeline(target)
    staging = target / STAGING
    shutil.rmtree(staging, ignore_errors=True)
    pipeline.save_pretrained(staging, safe_serialization=True)
    if card is not None:
        (staging / "README.md").write_text(card)
    follow_umask(staging)
    (staging / COMPLETE).touch()
    fault("pipeline-save")
    _swap_in(target)
    return target


def _staged_entries(staging: Path) -> list[str]:
    """What a save wrote (``unet/``, ``vae/``, ``config.json``, ...), the files that make it loadable last."""
    names = sorted(p.name for p in staging.iterdir() if p.name != COMPLETE)
    return sorted(names, key=lambda name: name in KEY_FILES)


def _swap_in(target: Path) -> None:
    staging, backup = target / STAGING, target / BACKUP
    backup.mkdir(exist_ok=True)
    entries = _staged_entries(staging)
    for name in reversed(entries):  # model_index.json / config.json leave first
        if (target / name).exists():
            os.replace(target / name, backup / name)
    for name in entries:  # ... and come back last
        os.replace(staging / name, target / name)
    shutil.rmtree(backup)
    shutil.rmtree(staging)


def recover_pipeline(target: str | Path) -> None:
    """Finish or undo a pipeline save that was interrupted (see :func:`save_pipeline`)."""
    target = Path(target)
    staging, backup = target / STAGING, target / BACKUP
    if (staging / COMPLETE).exists():
        _swap_in(target)  # the new pipeline was complete: finish moving it in
    else:
        shutil.rmtree(staging, ignore_errors=True)  # never finished writing: the old pipeline is still in place
        if backup.exists():  # (cannot happen without COMPLETE, but be safe) put the old entries back
            for entry in backup.iterdir():
                if not (target / entry.name).exists():
                    os.replace(entry, target / entry.name)
            shutil.rmtree(backup, ignore_errors=True)


def save_pipeline_snapshot(pipeline, target: str | Path) -> Path:
    """Save to a folder of its own (``epoch-0003/``): write ``epoch-0003.tmp``, then rename over."""
    target = Path(target)
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pipeline.save_pretrained(tmp, safe_serialization=True)
    replace_dir(tmp, target)
    return target


def replace_dir(src: Path, dst: Path) -> None:
    """Move folder ``src`` to ``dst``, replacing any old ``dst`` (kept as ``dst.old`` until the new one is in)."""
    old = dst.with_name(dst.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if dst.exists():
        os.replace(dst, old)
    os.replace(src, dst)
    shutil.rmtree(old, ignore_errors=True)


def is_pipeline_dir(path: str | Path) -> bool:
    return (Path(path) / "model_index.json").is_file()


# ------------------------------------------------------------------------------------------------------------------
# Training checkpoints (accelerate states)
# ------------------------------------------------------------------------------------------------------------------


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """``checkpoint-N`` folders of a run, oldest first (half-written ``.tmp`` ones are not listed)."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in output_dir.iterdir() if p.is_dir() and (m := CHECKPOINT_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def prune_checkpoints(output_dir: str | Path, keep: int | None) -> list[Path]:
    """Delete the oldest checkpoints so that at most ``keep`` remain; returns the deleted ones."""
    if keep is None:
        return []
    checkpoints = list_checkpoints(output_dir)
    doomed = checkpoints[: max(0, len(checkpoints) - keep)]
    for path in doomed:
        shutil.rmtree(path)
    return doomed


def resolve_checkpoint(output_dir: str | Path, resume_from_checkpoint: str) -> Path | None:
    """``latest`` -> the newest checkpoint of ``output_dir`` (``None`` if there is none); a path -> that path.

    The folder is checked before anything is loaded, so a missing or damaged checkpoint is a clear error.
    """
    if resume_from_checkpoint == "latest":
        checkpoints = list_checkpoints(output_dir)
        if not checkpoints:
            return None
        path = checkpoints[-1]
    else:
        path = Path(resume_from_checkpoint)
        if not path.is_absolute() and not path.exists():
            path = Path(output_dir) / path
        if not path.is_dir():
            available = [p.name for p in list_checkpoints(output_dir)] or "none"
            raise InputError(f"checkpoint {resume_from_checkpoint!r} does not exist (checkpoints in {output_dir}: "
                             f"{available}); pass one of them, 'latest', or drop --resume_from_checkpoint")
    validate_checkpoint(path)
    return path


def load_rng_states(path: Path) -> dict:
    """Read one of accelerate's ``random_states_*.pkl`` without running code from it: ``torch.load`` with
    ``weights_only=True`` (tensors and plain containers), plus the three numpy names that rebuild the array of numpy's
    generator state. What newer accelerate releases read it with; written out here because the floor (accelerate
    1.0) has no such helper. A pickle that names anything else is refused with an ``UnpicklingError``."""
    numpy_core = np._core if hasattr(np, "_core") else np.core  # numpy 2 renamed np.core
    numpy_array_names = [numpy_core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]
    with torch.serialization.safe_globals(numpy_array_names):
        return torch.load(path, map_location="cpu", weights_only=True)


def validate_checkpoint(path: Path) -> dict:
    """Check that a checkpoint folder is complete and readable; returns its ``training_state.json``.

    The RNG states are read here too, as accelerate will read them (``weights_only``: a pickle that holds more than
    tensors is refused, never run): accelerate itself skips states it cannot read with a log line, and the resumed
    run would then silently differ from an uninterrupted one."""
    missing = [f for f in REQUIRED_CHECKPOINT_FILES if not (path / f).is_file()]
    if missing:
        raise InputError(f"checkpoint {path} is incomplete or corrupt (missing {missing}); delete it and resume from "
                         "an earlier checkpoint, or start again without --resume_from_checkpoint")
    try:
        with safe_open(str(path / "model.safetensors"), framework="pt") as f:
            list(f.keys())
        state = json.loads((path / "training_state.json").read_text())
        int(state["global_step"])
        for rng in sorted(path.glob("random_states_*.pkl")):
            load_rng_states(rng)
    except Exception as e:
        first = (str(e).strip().splitlines() or [""])[0]
        raise InputError(f"checkpoint {path} is corrupt or holds more than tensors ({type(e).__name__}: {first}); "
                         "delete it and resume from an earlier checkpoint, or start again without "
                         "--resume_from_checkpoint") from e
    return state


def replace_link(path: Path) -> None:
    """Drop a staged link before writing a new file of that name (writing through a hard link would change the
    user's file)."""
    if path.is_symlink() or path.exists():
        path.unlink()


# ------------------------------------------------------------------------------------------------------------------
# Folders a command writes whole (exports): never replace what the command did not write
# ------------------------------------------------------------------------------------------------------------------

EXPORT_MARKER = ".sd_course-export.json"  # written into every export: what wrote it, so --overwrite may replace it
RUN_MARKERS = ("training_config.json", "train_summary.json")  # what makes a folder a training run


def _holds_a_run(folder: Path) -> bool:
    return any((folder / name).is_file() for name in RUN_MARKERS) or bool(list_checkpoints(folder))


def check_export_target(output: Path, source: Path, what: str, overwrite: bool = False) -> None:
    """Refuse an ``--output`` that an export would have to delete files for, before any work:

    * the source itself, a folder inside which the source lies (replacing it would delete the source), a file;
    * a folder that holds a training run or checkpoints (``--overwrite`` or not);
    * a non-empty folder that is not an earlier export of the same kind (``what``), recognised by its marker;
    * an earlier export, unless ``overwrite`` (``--overwrite``) says to replace it.
    An empty or missing folder is always fine."""
    output, source = Path(output).expanduser(), Path(source).expanduser()
    resolved_out, resolved_src = output.resolve(), source.resolve()
    if resolved_out == resolved_src:
        raise InputError("--output must differ from the run folder: export writes a clean copy")
    if resolved_src.is_relative_to(resolved_out):
        raise InputError(f"--output {output} holds the folder being exported ({source}): replacing it would delete "
                         "the source; choose a new folder, e.g. " + str(output / f"{source.name}-export"))
    if output.exists() and not output.is_dir():
        raise InputError(f"--output {output} is a file; give a folder to write the export to")
    if not output.is_dir() or not any(output.iterdir()):
        return
    marker = output / EXPORT_MARKER
    try:
        written = json.loads(marker.read_text()) if marker.is_file() else None
    except (OSError, ValueError):
        written = None
    if list_checkpoints(output) or any(output.glob("epoch-*")) or (not written and _holds_a_run(output)):
        raise InputError(f"--output {output} holds a training run (its config, summary or checkpoints); export never "
                         "replaces one, even with --overwrite: choose a new folder")
    if not written or written.get("what") != what:
        raise InputError(f"--output {output} already holds files that `sd-course export` did not write"
                         + (f" (an export of a {written.get('what')})" if written and written.get("what") else "")
                         + "; export never deletes them: choose an empty or new folder")
    if not overwrite:
        raise InputError(f"--output {output} holds an earlier export (of {written.get('source', '?')}); pass "
                         "--overwrite to replace it, or choose a new folder")


def write_export_marker(folder: Path, what: str, source: Path) -> None:
    (Path(folder) / EXPORT_MARKER).write_text(json.dumps(dict(what=what, source=str(source), by="sd-course export"),
                                                         indent=2) + "\n")


def describe_os_error(error: OSError) -> str:
    """One line for a failed write: what the disk said, in words a user can act on."""
    if error.errno == errno.ENOSPC:
        return "the disk is full; free some space or write elsewhere"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"no permission to write there ({error.strerror}); choose a folder you can write to"
    return f"{error.strerror or error}"


# ------------------------------------------------------------------------------------------------------------------
# One writer per folder, and files the user's group can read
# ------------------------------------------------------------------------------------------------------------------

LOCK_FILE = ".sd_course.lock"  # inside the folder being written; holds the writer's PID and what it does


class FolderLock:
    """An OS lock on ``folder`` (``flock`` of ``folder/.sd_course.lock``): one writer at a time. The kernel releases
    it when the holder exits or is killed, so a crash never leaves a stale lock; a second writer is refused at once
    with the holder's PID.

        with FolderLock("runs/mnist", "training"):
            ...   # train, resume, export or push: nobody else writes runs/mnist meanwhile
    """

    def __init__(self, folder: str | Path, what: str):
        self.folder, self.what, self.handle = Path(folder), what, None

    def __enter__(self):
        if fcntl is None:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        handle = open(self.folder / LOCK_FILE, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise InputError(f"{self.folder} is being written by {holder}; wait for it to finish, or stop it, then run "
                             f"this {self.what} again (two writers would mix their files)") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"PID {os.getpid()} ({self.what})")
        handle.flush()
        self.handle = handle
        return self

    def __exit__(self, *exc):
        if self.handle is not None:
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None
        return False


class ReadLock:
    """Read ``folder`` while no one writes it: a shared lock on its ``.sd_course.lock`` when a training run left one
    there (and nothing when none did: nothing of ours ever wrote it). Nothing is created in ``folder``. A training
    of the folder that is running refuses this reader, and a training that starts meanwhile is refused."""

    def __init__(self, folder: str | Path, what: str):
        self.folder, self.what, self.handle = Path(folder), what, None

    def __enter__(self):
        path = self.folder / LOCK_FILE
        if fcntl is None or not path.is_file():
            return self
        try:
            handle = open(path)
        except OSError:  # a folder we may read but not lock (another user's): nothing to guard against here
            return self
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = handle.read().strip() or "another process"
            handle.close()
            raise InputError(f"{self.folder} is being written by {holder}; wait for it to finish (or stop it) before "
                             f"this {self.what}: its files are not complete yet") from None
        self.handle = handle
        return self

    def __exit__(self, *exc):
        if self.handle is not None:
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None
        return False


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def follow_umask(path: str | Path) -> None:
    """Give ``path`` (a file, or a folder and everything in it) the modes the user's umask gives new files: some
    writers (the current safetensors, ``tempfile``) create files readable by their owner only, which on a shared
    lab machine nobody else can load."""
    mask = current_umask()
    path = Path(path)
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        if p.is_symlink():
            continue
        try:
            p.chmod((0o777 if p.is_dir() else 0o666) & ~mask)
        except OSError:
            pass  # not ours to change (a file of another user in a shared folder): leave it as it is
