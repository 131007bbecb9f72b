"""How long does each of the lab's notebooks take, run as the lab runs it? Each one top to bottom in a fresh kernel.

    python benchmarks/notebook_times.py --output_json benchmarks/results/notebook_times.json   # the lab's run
    python benchmarks/notebook_times.py --quick --notebooks part1_inversion                     # what CI runs, one

Each notebook (``notebooks/part*.py``, jupytext's percent format) is turned into an .ipynb and executed by papermill
in a fresh kernel, exactly as ``notebooks/README.md`` tells a teacher to, with ``quick`` (default ``False``: the
lab's run), ``device`` (default ``cpu``) and its outputs and training runs in a temporary folder, so nothing a
student already trained is reused or touched. It records the minutes of the whole notebook and of its training cell
(the cell that prints "trained in": papermill's own timing of that cell), and writes them with their provenance:
the notebooks and the recipes they train are its inputs, so a changed recipe makes the result stale (``sd-course
results check``) and ``sd-course results rerun notebook_times`` times them again.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import jupytext
import nbformat
import papermill

from sd_course.core.device import device_argument, resolve_device
from sd_course.core.provenance import relative_to_root, write_result

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("part*.py"))
# The recipes the notebooks train in their lab run: a change to one changes the notebook's minutes.
RECIPES = ["training/configs/mnist-quick.yaml", "training/configs/mini-sd-quick.yaml"]


def run_notebook(path: Path, quick: bool, device: str, workdir: Path) -> dict:
    """Execute one notebook in a fresh kernel; its minutes, and those of its training cell if it has one."""
    source = workdir / f"{path.stem}.ipynb"
    nbformat.write(jupytext.read(path), source)
    text = path.read_text()
    parameters = dict(quick=quick, output_dir=str(workdir / "lab"))
    if 'device = "auto"' in text:
        parameters["device"] = device
    if "run_dir = " in text:
        parameters["run_dir"] = str(workdir / "run")
    start = time.perf_counter()
    executed = papermill.execute_notebook(str(source), str(workdir / f"{path.stem}_out.ipynb"), parameters=parameters,
                                          kernel_name="python3", cwd=str(REPO / "notebooks"), progress_bar=False)
    row = dict(notebook=path.stem, quick=quick, minutes=round((time.perf_counter() - start) / 60, 2))
    for cell in executed.cells:
        printed = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")
        if cell.cell_type == "code" and "trained in" in printed:
            row["train_minutes"] = round(cell.metadata["papermill"]["duration"] / 60, 2)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notebooks", default=",".join(p.stem for p in NOTEBOOKS),
                        help="comma-separated notebook names (default: all four)")
    parser.add_argument("--quick", action="store_true", help="the notebooks' quick=True (what CI runs)")
    parser.add_argument("--device", default="cpu", type=device_argument,
                        help="the notebooks' device parameter: cpu, cuda, mps or auto")
    parser.add_argument("--output_json", default=None)
    args = parser.parse_args()

    known = {p.stem: p for p in NOTEBOOKS}
    names = [n.strip() for n in args.notebooks.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        parser.error(f"--notebooks: unknown {unknown or 'none given'}; choose among {', '.join(known)}")

    rows = []
    for name in names:
        with tempfile.TemporaryDirectory(prefix="notebook_times_") as tmp:
            rows.append(run_notebook(known[name], args.quick, args.device, Path(tmp)))
        print(rows[-1], flush=True)
    if args.output_json:
        inputs = [relative_to_root(known[n]) for n in names] + RECIPES
        written = write_result(args.output_json, dict(rows=rows), inputs=inputs, device=resolve_device(args.device))
        print(f"wrote {written}")


if __name__ == "__main__":
    main()
