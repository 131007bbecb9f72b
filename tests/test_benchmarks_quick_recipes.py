"""benchmarks/quick_recipes.py: a recipe trained whole, then scored on several sets of starting noises, with the
mean over them (at n = 200 another set of noises gives another FID).

    python -m pytest tests/test_benchmarks_quick_recipes.py -q
"""

from __future__ import annotations

import json

from conftest import REPO, as_flags, run_python, tiny_run_values


def test_each_run_is_scored_on_each_set_of_noises_and_averaged(tmp_path):
    flags = tiny_run_values(tmp_path / "unused", model_config_name_or_path="mnist-lean", resolution=28,
                            max_train_steps=4)  # the classifier's 28x28 digits: FID compares like with like
    del flags["output_dir"]  # the benchmark trains into its own folder
    out = tmp_path / "quick.json"
    result = run_python([str(REPO / "benchmarks" / "quick_recipes.py"), "--config", "training/configs/mnist-quick.yaml",
                         "--reference", "builtin:mnist-2k:train", "--num_samples", "20", "--num_inference_steps", "2",
                         "--sampling_seeds", "1,2", "--keep_runs", str(tmp_path / "runs"), "--output_json", str(out),
                         *as_flags(flags)])
    assert result.returncode == 0, result.stderr[-2000:]
    saved = json.loads(out.read_text())
    rows = saved["rows"]
    assert [r["sampling_seed"] for r in rows] == [1, 2]
    assert {r["steps"] for r in rows} == {flags["max_train_steps"]}  # one training run, scored twice
    assert rows[0]["fid"] != rows[1]["fid"]  # other noises, other samples
    (summary,) = saved["summary"]
    assert summary["sampling_seeds"] == [1, 2]
    assert summary["fid"] == round((rows[0]["fid"] + rows[1]["fid"]) / 2, 1)
    assert (summary["fid_min"], summary["fid_max"]) == (min(r["fid"] for r in rows), max(r["fid"] for r in rows))
    assert summary["rarest_digit"] == min(r["rarest_digit"] for r in rows)
    assert saved["provenance"]["inputs"]  # the recipe and the classifier, hashed
    assert (tmp_path / "runs" / "run-auto-seed0" / "model_index.json").is_file()


def test_bad_sampling_seeds_are_one_line_before_any_training(tmp_path):
    result = run_python([str(REPO / "benchmarks" / "quick_recipes.py"), "--sampling_seeds", "1234,x",
                         "--keep_runs", str(tmp_path / "runs")])
    assert result.returncode == 2
    assert "argument --sampling_seeds: '1234,x' is not comma-separated integers" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "runs").exists()
