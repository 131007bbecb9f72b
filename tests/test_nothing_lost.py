"""Nothing lost, ever: what `sd-course export` may and may not replace, and what a failed write leaves behind.

Each case starts from files a user has, runs the command as the user would, and checks that every file outside the
command's own output is byte-identical afterwards (and the previous export too, when the command fails)."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import pytest
from conftest import tiny_run_args

from sd_course.app.cli import main as cli
from sd_course.app.launch import main as train
from sd_course.core.checkpoints import EXPORT_MARKER
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
