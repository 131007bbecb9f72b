"""``--device`` on every benchmark that samples or scores a model: a device this machine lacks is one argparse line
(exit 2) before any model is loaded or trained, and a device it has is used.

    python -m pytest tests/test_benchmarks_device.py -q
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys

import pyarrow.parquet as pq
import pytest
import torch

from conftest import REPO, run_python
from sd_course.core.device import device_argument

# the scripts that sample or score (the training ones run where accelerate puts them)
SAMPLING_BENCHMARKS = ["fid_vs_steps", "guidance_sweep", "inpaint", "memorisation", "noise_schedules", "notebook_times",
                       "prompt_robustness", "quick_recipes", "sample_speed", "scheduler_table", "vae_quality"]


def load_benchmark(name: str, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))  # noise_schedules imports recipe_sweep beside it
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # a module's dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


def test_device_argument_keeps_what_torch_has_and_refuses_the_rest():
    assert device_argument("auto") == "auto" and device_argument("cpu") == "cpu"
    with pytest.raises(argparse.ArgumentTypeError, match=r"'tpu' is not a device torch knows .*use auto, cpu, cuda"):
        device_argument("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(argparse.ArgumentTypeError, match="this torch sees no CUDA GPU; use --device cpu"):
            device_argument("cuda")


@pytest.mark.parametrize("name", SAMPLING_BENCHMARKS)
def test_unknown_device_is_one_line_before_any_work(name, monkeypatch, capsys):
    module = load_benchmark(name, monkeypatch)
    monkeypatch.setattr(sys, "argv", [f"benchmarks/{name}.py", "--device", "tpu"])
    with pytest.raises(SystemExit) as stop:
        module.main()  # each main() parses sys.argv when given no list
    assert stop.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "argument --device: 'tpu' is not a device torch knows" in errors[0]


def test_vae_quality_runs_on_the_device_it_is_given(tmp_path):
    digits = pq.read_table(REPO / "sd_course" / "assets" / "mnist-2k" / "train.parquet")
    pq.write_table(digits.slice(0, 64), tmp_path / "train.parquet")  # a local dataset with both splits, as
    pq.write_table(digits.slice(64, 64), tmp_path / "test.parquet")  # ylecun/mnist has them
    out = tmp_path / "vae.json"
    result = run_python([str(REPO / "benchmarks" / "vae_quality.py"), "--dataset_name", str(tmp_path),
                         "--num_images", "64", "--device", "cpu", "--output_json", str(out)])
    assert result.returncode == 0, result.stderr[-2000:]
    saved = json.loads(out.read_text())
    assert saved["n"] == 64 and saved["encode_images_per_s"] > 0
    assert saved["provenance"]["device"].endswith("threads")  # the CPU's description, not a GPU's


def test_vae_quality_without_a_test_split_is_one_line(tmp_path):
    result = run_python([str(REPO / "benchmarks" / "vae_quality.py"), "--dataset_name", "builtin:mnist-2k",
                         "--device", "cpu"])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "has no split 'test'" in result.stderr.strip().splitlines()[-1]
