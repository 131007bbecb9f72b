"""Nothing lost, ever: what `sd-course export` may and may not replace, and what a failed write leaves behind.

Each case starts from files a user has, runs the command as the user would, and checks that every file outside the
command's own output is byte-identical afterwards (and the previous export too, when the command fails)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, tiny_run_args

from sd_course.app.cli import main as cli
from sd_course.app.launch import main as train
from sd_course.core.checkpoints import EXPORT_MARKER, LOCK_FILE
from sd_course.core.errors import InputError
from sd_course.pixel.diffusion import PixelDiffusion
from sd_course.publish import export

EXPORT_FLAGS = ["--num_grid", "2", "--scheduler", "ddim", "--num_inference_steps", "2"]


def one_error_line(err: str) -> bool:
    """What a user sees of a refused command: one line that says `error:` (progress bars aside), no traceback."""
    return len([line for line in err.splitlines() if "error:" in line]) == 1 and "Traceback" not in err


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (what "nothing changed" is checked against)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A tiny training run with a checkpoint and a snapshot, inside a user's workspace."""
    out = tmp_path_factory.mktemp("workspace") / "runs" / "tiny"
    train(tiny_run_args(out, max_train_steps=4, checkpointing_steps=2, save_model_epochs=1),
          objective_class=PixelDiffusion)
    return out


def export_cli(run: Path, output: Path, *extra: str) -> int:
    return cli(["export", str(run), "--output", str(output), *EXPORT_FLAGS, *extra])


def test_a_folder_of_ones_own_notes_is_refused_and_kept(run, tmp_path, capsys):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "lecture.md").write_text("my notes")
    before = snapshot(notes)
    assert export_cli(run, notes) == 2
    err = capsys.readouterr().err
    assert "did not write" in err and one_error_line(err)
    assert export_cli(run, notes, "--overwrite") == 2  # --overwrite replaces only an earlier export
    assert snapshot(notes) == before


def test_the_parent_of_the_run_or_a_folder_holding_a_run_is_refused(run, capsys):
    before = snapshot(run.parent.parent)
    for target in (run.parent, run.parent.parent):  # runs/ and the workspace: both hold the run being exported
        assert export_cli(run, target, "--overwrite") == 2
        assert "holds the folder being exported" in capsys.readouterr().err
    other = run.parent / "other-run"
    shutil.copytree(run, other)
    before = snapshot(run.parent.parent)
    assert export_cli(run, other, "--overwrite") == 2
    assert "holds a training run" in capsys.readouterr().err
    assert snapshot(run.parent.parent) == before
    shutil.rmtree(other)


def test_an_earlier_export_is_replaced_only_with_overwrite(run, tmp_path, capsys):
    out = tmp_path / "export"
    assert export_cli(run, out) == 0
    first = snapshot(out)
    assert EXPORT_MARKER in first
    assert export_cli(run, out) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert snapshot(out) == first
    assert export_cli(run, out, "--overwrite", "--seed", "1") == 0
    assert snapshot(out)["samples.png"] != first["samples.png"]  # replaced, with the new seed's grid
    assert not list(tmp_path.glob(".*export*"))  # no staging folder left


def test_an_empty_or_missing_folder_is_fine(run, tmp_path):
    (tmp_path / "empty").mkdir()
    for target in (tmp_path / "empty", tmp_path / "new" / "deeper"):
        assert export_cli(run, target) == 0
        assert (target / "model_index.json").is_file()


@pytest.mark.parametrize("code, says", [(errno.ENOSPC, "the disk is full"), (errno.EACCES, "no permission")])
def test_a_full_disk_or_a_read_only_target_ends_in_one_line_and_keeps_the_previous_export(run, tmp_path, monkeypatch,
                                                                                         capsys, code, says):
    """Simulated: the copy of the U-Net fails as a full or read-only disk makes it fail (root ignores permissions, so
    a chmod would not test anything here)."""
    out = tmp_path / "export"
    assert export_cli(run, out) == 0
    before = snapshot(out)

    def failing_copytree(src, dst, *args, **kwargs):
        raise OSError(code, "simulated", str(dst))

    monkeypatch.setattr(export.shutil, "copytree", failing_copytree)
    assert export_cli(run, out, "--overwrite") == 2
    err = capsys.readouterr().err
    assert says in err and "previous export is intact" in err and one_error_line(err)
    assert snapshot(out) == before
    assert not list(tmp_path.glob(".*export*"))


def test_the_library_call_refuses_the_same(run, tmp_path):
    with pytest.raises(InputError, match="holds the folder being exported"):
        export.export_pipeline(run, run.parent, num_grid=2, scheduler="ddim", num_inference_steps=2)


# ---- one writer per run ------------------------------------------------------------------------------------------

ENTRY = str(REPO / "training" / "train_unconditional.py")


def wait_for(condition, timeout: float = 120, what: str = "") -> None:
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def logged_steps(out: Path) -> int:
    log = out / "logs" / "loss.jsonl"
    return len(log.read_text().splitlines()) if log.is_file() else 0


def long_run(out: Path, **extra) -> list[str]:
    """A run that would take minutes: the tests stop it once they have seen what they need."""
    return tiny_run_args(out, max_train_steps=20000, train_batch_size=4, **extra)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]


def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path, capsys):
    out = tmp_path / "run"
    first = subprocess.Popen([sys.executable, ENTRY, *long_run(out)], cwd=str(REPO), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        wait_for(lambda: logged_steps(out) >= 2, what="the first run's steps")
        before = snapshot(out)
        with pytest.raises(SystemExit) as stopped:  # a resume next to it, as in the issue
            train(tiny_run_args(out, max_train_steps=4, resume_from_checkpoint="latest"),
                  objective_class=PixelDiffusion)
        assert stopped.value.code == 2
        err = capsys.readouterr().err
        assert f"PID {first.pid} (training)" in err and one_error_line(err)
        # export and push of the run being written are refused too, and nothing of it was touched by the refusals
        with pytest.raises(InputError, match=f"PID {first.pid}"):
            export.export_pipeline(out, tmp_path / "export")
        after = snapshot(out)
        assert all(after[name] == data for name, data in before.items() if not name.startswith("logs/"))
    finally:
        first.kill()
        first.wait()
    # the kernel released the lock with the process: the run can be resumed now
    train(tiny_run_args(out, max_train_steps=2, resume_from_checkpoint="latest"), objective_class=PixelDiffusion)


def test_a_training_child_whose_launcher_died_stops_and_leaves_a_checkpoint(tmp_path):
    """kill -9 of `accelerate launch`: its child is reparented; it saves a checkpoint at its next step and exits."""
    out = tmp_path / "run"
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no", ENTRY, *long_run(out)]
    launcher = subprocess.Popen(launch, cwd=str(REPO), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        wait_for(lambda: logged_steps(out) >= 3, what="the child's first steps")
        child = int((out / LOCK_FILE).read_text().split()[1])
        assert child != launcher.pid
        launcher.kill()  # SIGKILL: the launcher cannot tell its child anything
        launcher.wait()
        wait_for(lambda: not pid_alive(child), timeout=60, what="the orphaned child to stop")
    finally:
        os.killpg(launcher.pid, signal.SIGKILL) if pid_alive(launcher.pid) else None
    checkpoints = sorted(out.glob("checkpoint-*"))
    assert len(checkpoints) == 1 and not checkpoints[0].name.endswith(".tmp")
    step = json.loads((checkpoints[0] / "training_state.json").read_text())["global_step"]
    assert step >= 3 and logged_steps(out) == step  # it stopped at the step it saved
    # its output went through the launcher's pipe, now without a reader: the reason is in a file of the run
    assert f"saved checkpoint-{step} and stopped" in (out / "logs" / "orphaned.log").read_text()
    train(tiny_run_args(out, max_train_steps=step + 1, resume_from_checkpoint="latest"),
          objective_class=PixelDiffusion)
    assert json.loads((out / "train_summary.json").read_text())["resumed_from_step"] == step


def test_weights_checkpoints_and_exports_follow_the_umask(run, tmp_path):
    """Others on a shared lab machine can read a student's model (umask 022: rw-r--r--)."""
    previous = os.umask(0o022)
    try:
        out = tmp_path / "run"
        train(tiny_run_args(out, max_train_steps=2, checkpointing_steps=2), objective_class=PixelDiffusion)
        exported = tmp_path / "export"
        assert export_cli(out, exported) == 0
        files = [p for folder in (out, exported) for p in folder.rglob("*") if p.is_file() and p.name != LOCK_FILE]
        assert any(p.suffix == ".safetensors" for p in files) and any("checkpoint-" in str(p) for p in files)
        modes = {str(p.relative_to(tmp_path)): oct(p.stat().st_mode & 0o777) for p in files}
        assert set(modes.values()) == {"0o644"}, modes
    finally:
        os.umask(previous)


def test_a_resume_killed_in_turn_resumes_again_to_the_same_weights(tmp_path):
    """kill -9 of a run, then kill -9 of its resume: the second resume still ends bit-exact, and the checkpoint the
    killed resume started from is kept until a newer one is complete."""
    flags = dict(max_train_samples=48, train_batch_size=8, max_train_steps=6, checkpointing_steps=2,
                 checkpoints_total_limit=2)
    straight = train(tiny_run_args(tmp_path / "straight", **flags), objective_class=PixelDiffusion)
    out = tmp_path / "run"
    for kill_at, resume in ((3, None), (5, "latest")):
        result = subprocess.run([sys.executable, ENTRY, *tiny_run_args(out, **flags, resume_from_checkpoint=resume)],
                                capture_output=True, text=True, timeout=300, cwd=str(REPO),
                                env={**os.environ, "SD_COURSE_FAULT": f"step:{kill_at}"})
        assert result.returncode == -9, result.stderr[-2000:]
        assert not (out / "model_index.json").exists()
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    train(tiny_run_args(out, **flags, resume_from_checkpoint="latest"), objective_class=PixelDiffusion)
    name = "unet/diffusion_pytorch_model.safetensors"
    assert (out / name).read_bytes() == (straight / name).read_bytes()
