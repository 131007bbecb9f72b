"""The lab's notebooks (notebooks/*.py, jupytext percent format), run as a student's Jupyter would run them.

Each notebook is turned into an .ipynb by jupytext and executed top to bottom by papermill in a fresh kernel,
with the parameters a CI machine can afford (``quick=True``, ``device="cpu"``) and its outputs in a temporary
folder: what `notebooks/README.md` tells a teacher to run. The same files make the student handout, answers removed.

    python -m pytest tests/notebooks -q
"""

from __future__ import annotations

import re

import jupytext
import nbformat
import papermill
import pytest

from conftest import REPO
from sd_course.app.course import NOTEBOOK_ANSWER, strip_notebook_answers

NOTEBOOKS = sorted((REPO / "notebooks").glob("part*.py"))
# What each notebook must leave in its output folder (the figures it shows), relative to output_dir.
FIGURES = {
    "part1_inversion": ["inversion/inverse_fit.png", "inversion/extrapolation.png", "inversion/noninvertible.png"],
    "part2_pixel_diffusion": ["forward.png", "schedules.png", "trajectory.png", "pretrained.png", "dpm++.png",
                              "compare/compare_grid.png", "compare/compare.json"],
    "part3_latent_stable_diffusion": ["latents/channels.png", "sevens_w2.png", "sevens_w1.png", "my_sevens.png"],
    "part4_discussion": ["ddim_1_steps.png", "gan.png", "inpaint.png"],
}


def test_there_is_a_notebook_per_part_and_no_outputs_are_kept():
    assert [p.stem for p in NOTEBOOKS] == sorted(FIGURES)
    assert not list((REPO / "notebooks").glob("*.ipynb")), "commit the jupytext .py files, not .ipynb outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_has_parameters_questions_and_answers(path):
    notebook = jupytext.read(path)
    parameters = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(parameters) == 1 and re.search(r"^quick = False\b", parameters[0].source, re.M)
    models_run = path.stem != "part1_inversion"  # Part 1's MLPs are too small to want a GPU
    assert bool(re.search(r'^device = "auto"', parameters[0].source, re.M)) == models_run
    # every question cell is followed by an answer cell, which the handout empties and nothing else
    markdown = [c.source for c in notebook.cells if c.cell_type == "markdown"]
    questions = [i for i, text in enumerate(markdown) if text.startswith("**Q:**")]
    assert questions and all(markdown[i + 1].startswith("**A:**") for i in questions)
    stripped, removed = strip_notebook_answers(path.read_text())
    assert removed == len(questions)
    answers = [text for text in markdown if text.startswith("**A:**")]
    for answer in answers:
        for sentence in re.split(r"(?<=\.)\s+", answer.removeprefix("**A:**").strip()):
            if len(sentence) > 30 and not sentence.startswith("The key"):  # "The key: <file>" only points
                assert sentence not in stripped.replace("\n# ", " ")
    assert stripped.count(f"{NOTEBOOK_ANSWER} (your answer here)") == len(questions)
    assert jupytext.reads(stripped, fmt="py:percent").cells  # the student's copy is still a notebook


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_quick_in_a_fresh_kernel(path, tmp_path):
    source = tmp_path / f"{path.stem}.ipynb"
    nbformat.write(jupytext.read(path), source)
    parameters = dict(quick=True, output_dir=str(tmp_path / "lab"))
    text = path.read_text()
    if 'device = "auto"' in text:
        parameters["device"] = "cpu"
    if "run_dir = " in text:
        parameters["run_dir"] = str(tmp_path / "run")
    executed = papermill.execute_notebook(str(source), str(tmp_path / "executed.ipynb"), parameters=parameters,
                                          kernel_name="python3", cwd=str(REPO / "notebooks"), progress_bar=False)
    outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    printed = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert f"course folder: {REPO}" in printed  # the kernel imported this checkout's package
    assert not [o for o in outputs if o.get("output_type") == "error"]
    shown = sum("image/png" in o.get("data", {}) for o in outputs)
    assert shown >= len(FIGURES[path.stem])  # the figures are shown inline, not only written
    for figure in FIGURES[path.stem]:
        written = tmp_path / "lab" / figure
        assert written.is_file() and written.stat().st_size > 0, figure
