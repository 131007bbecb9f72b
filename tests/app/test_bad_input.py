"""Bad input found by trying the commands as a new user: each ends in one line that names the problem and the fix,
exit status 2, no traceback, nothing written."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO

from sd_course.app.cli import main


def refused(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    return err


def test_a_typo_in_the_bundled_dataset_names_the_bundled_one(tmp_path, capsys):
    err = refused(["forward", "--dataset_name", "builtin:mnist-2kk", "--output", str(tmp_path / "f.png")], capsys)
    assert "no bundled dataset 'builtin:mnist-2kk'" in err and "builtin:mnist-2k" in err and "Hub" in err
    assert not (tmp_path / "f.png").exists()


def test_an_unknown_mask_lists_the_named_masks(tmp_path, capsys):
    digit = tmp_path / "digit.png"
    assert main(["sample", "--model", "analytic:mnist", "--num_inference_steps", "2", "--num_images", "1",
                 "--output_dir", str(tmp_path / "d"), "--output", str(tmp_path / "g.png")]) == 0
    (tmp_path / "d" / "00000.png").rename(digit)
    err = refused(["inpaint", "--model", "analytic:mnist", "--image", str(digit), "--mask", "bottom_half",
                   "--output", str(tmp_path / "out.png")], capsys)
    assert "lower_half" in err and "upper_half" in err and "center" in err


@pytest.mark.parametrize("flag", ["--height", "--width"])
def test_height_and_width_are_refused_by_a_pixel_model(tmp_path, capsys, flag):
    err = refused(["sample", "--model", "analytic:mnist", flag, "64", "--output", str(tmp_path / "g.png")], capsys)
    assert f"does not take {flag}" in err
    assert not (tmp_path / "g.png").exists()


def test_an_absurd_number_of_steps_is_refused_before_sampling(tmp_path, capsys):
    err = refused(["sample", "--model", "analytic:mnist", "--scheduler", "euler", "--num_inference_steps", "100000",
                   "--output", str(tmp_path / "g.png")], capsys)
    assert "2000 or fewer" in err


def test_a_bad_flag_under_accelerate_launch_quiet_is_one_line(tmp_path):
    """Under `accelerate launch` the child's clean line stands; the launcher adds a traceback of its own
    (CalledProcessError) unless it is run with -q, as the README says."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "-q", "--num_processes", "1", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", str(REPO / "training" / "train_unconditional.py"),
           "--dataset_name", "builtin:mnist-2kk", "--output_dir", str(tmp_path / "run")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=str(REPO))
    assert result.returncode != 0
    assert "no bundled dataset 'builtin:mnist-2kk'" in result.stderr
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "run" / "model_index.json").exists()


def test_a_long_prompt_is_noted_once_not_once_per_image(tmp_path, capfd, recwarn):
    long_prompt = "a " + "very " * 80 + "neat handwritten digit seven"  # over the 77 tokens of the text encoder
    assert main(["sample", "--model", str(REPO / "pipelines" / "mini-sd-mnist"), "--prompt", long_prompt,
                 "--num_inference_steps", "2", "--num_images", "4", "--batch_size", "2",
                 "--output", str(tmp_path / "g.png")]) == 0
    err = capfd.readouterr().err
    notes = [str(w.message) for w in recwarn if "longer than the text encoder's" in str(w.message)]
    assert len(notes) == 1 and "only 'a very" in notes[0], notes
    assert "truncated because CLIP can only handle" not in err  # diffusers' own warning, once per call, is gone
