"""benchmarks/notebook_times.py: the minutes notebooks/README.md quotes, measured by running the notebooks as the lab
runs them (papermill, a fresh kernel), with their provenance. Run here on a two-cell notebook of the same form (the
four real ones already run in tests/notebooks/test_notebooks.py).

    python -m pytest tests/notebooks/test_notebook_times.py -q
"""

from __future__ import annotations

import importlib.util
import json
import sys

from conftest import REPO, run_python

SCRIPT = REPO / "benchmarks" / "notebook_times.py"
NOTEBOOK = '''# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% tags=["parameters"]
quick = False
output_dir = "lab"
run_dir = "runs/x"

# %%
import time
from pathlib import Path
start = time.time()
time.sleep(0.5 if quick else 1.0)
Path(run_dir).mkdir(parents=True)
print(f"trained in {(time.time() - start) / 60:.1f} min")

# %%
print("done")
'''


def load_script(monkeypatch):
    spec = importlib.util.spec_from_file_location("notebook_times", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def test_a_notebook_is_timed_whole_and_in_its_training_cell(tmp_path, monkeypatch):
    module = load_script(monkeypatch)
    notebook = tmp_path / "part9_tiny.py"
    notebook.write_text(NOTEBOOK)
    monkeypatch.setattr(module, "NOTEBOOKS", [notebook])
    out = tmp_path / "times.json"
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), "--quick", "--output_json", str(out)])
    module.main()
    saved = json.loads(out.read_text())
    (row,) = saved["rows"]
    assert row["notebook"] == "part9_tiny" and row["quick"] is True
    assert 0.5 / 60 <= row["train_minutes"] < row["minutes"]  # papermill's timing of the cell, within the whole
    assert any(path.endswith("part9_tiny.py") for path in saved["provenance"]["inputs"])  # hashed: stale when edited
    assert "training/configs/mnist-quick.yaml" in saved["provenance"]["inputs"]  # the recipes the notebooks train
    assert not (tmp_path / "runs").exists()  # its run_dir went to a temporary folder, not beside the notebook


def test_an_unknown_notebook_is_one_line():
    result = run_python([str(SCRIPT), "--notebooks", "part9_nothing"])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "unknown ['part9_nothing']; choose among part1_inversion" in result.stderr.strip().splitlines()[-1]
