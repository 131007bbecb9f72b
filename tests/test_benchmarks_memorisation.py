"""benchmarks/memorisation.py: the nearest training digit of each sample, and the exact denoiser of 16 digits as the
memoriser it is (its samples are copies; new real digits are not).

    python -m pytest tests/test_benchmarks_memorisation.py -q
"""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest
import torch

from conftest import REPO, run_python
from sd_course.core.errors import InputError
from sd_course.pixel.analytic import named_denoiser

_spec = importlib.util.spec_from_file_location("memorisation_benchmark", REPO / "benchmarks" / "memorisation.py")
memorisation = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = memorisation  # dataclasses look their module up
_spec.loader.exec_module(memorisation)


def test_nearest_neighbour_of_a_handmade_case():
    train = torch.tensor([[0, 0, 0, 0], [255, 255, 255, 255], [0, 255, 0, 255]], dtype=torch.uint8).reshape(3, 1, 2, 2)
    queries = torch.tensor([[26, 26, 26, 26],        # a dark grey: nearest the black image, 26/255 away everywhere
                            [255, 255, 255, 255],    # an exact copy of the white image: distance exactly 0
                            [0, 255, 0, 200]],       # the stripes with one pixel off by 55: RMS sqrt(55^2 / 4) / 255
                           dtype=torch.uint8).reshape(3, 1, 2, 2)
    distances, indices = memorisation.nearest_neighbours(queries, train)
    assert indices.tolist() == [0, 1, 2]
    assert distances[1] == 0
    torch.testing.assert_close(distances, torch.tensor([26 / 255, 0, 27.5 / 255], dtype=torch.float64))
    floats, _ = memorisation.nearest_neighbours(queries.double() / 255, train.double() / 255)  # [0, 1] floats too
    torch.testing.assert_close(floats, distances)


def test_chunks_give_the_brute_force_answer():
    g = torch.Generator().manual_seed(0)
    train = torch.randint(0, 256, (50, 1, 6, 6), generator=g, dtype=torch.uint8)
    queries = torch.randint(0, 256, (9, 1, 6, 6), generator=g, dtype=torch.uint8)
    distances, indices = memorisation.nearest_neighbours(queries, train, chunk=7)
    full = torch.cdist(queries.reshape(9, -1).double() / 255, train.reshape(50, -1).double() / 255) / 6  # sqrt(36)
    torch.testing.assert_close(distances, full.min(1).values)
    assert indices.tolist() == full.argmin(1).tolist()


def test_training_sets_and_runs_are_read_as_training_reads_them(tmp_path, capsys):
    sixteen = memorisation.TrainSet.parse("builtin:mnist-2k:train[:16]")
    assert (sixteen.dataset, sixteen.split, sixteen.first) == ("builtin:mnist-2k", "train", 16)
    assert memorisation.TrainSet.parse("../shared/data/mnist") == memorisation.TrainSet("../shared/data/mnist")
    for bad in ("builtin:mnist-2k:train[:0]", "builtin:mnist-2k:train[16]", ""):
        with pytest.raises(InputError):
            memorisation.TrainSet.parse(bad)
    # a run folder's training_config.json says what it trained on: the first N rows of a split
    (tmp_path / "training_config.json").write_text(json.dumps(
        dict(dataset_name="builtin:mnist-2k", split="train", max_train_samples=16, resolution=28, resize_mode="pad")))
    run = memorisation.parse_run(f"u16={tmp_path}")
    assert (run.name, run.train_set, run.resolution, run.resize_mode) == ("u16", sixteen, 28, "pad")
    memorisation.parse_run(f"u16={tmp_path}@builtin:mnist-2k:train")  # asked for another set: measured, with a note
    assert "records its training set as builtin:mnist-2k:train[:16]" in capsys.readouterr().out
    assert memorisation.parse_run("analytic:mnist").train_set == sixteen
    with pytest.raises(InputError, match="is not a folder here"):
        memorisation.parse_run(f"x={tmp_path / 'elsewhere'}")
    with pytest.raises(InputError, match="no training_config.json"):
        memorisation.parse_run(f"x={REPO / 'sd_course'}")
    with pytest.raises(InputError, match="run name"):
        memorisation.parse_run("a.b=analytic:mnist")
    # the 16 digits named for analytic:mnist are the ones its denoiser holds
    digits = memorisation.load_digits(sixteen, 28)
    means = named_denoiser("mnist").means.reshape(16, 1, 28, 28)
    assert torch.equal(digits, ((means + 1) * 127.5).round().to(torch.uint8))


def test_heldout_digits_leave_out_exact_copies_of_training_digits():
    g = torch.Generator().manual_seed(1)
    pool = torch.randint(0, 256, (40, 1, 4, 4), generator=g, dtype=torch.uint8)
    train = pool[:10]
    digits, distances = memorisation.heldout_digits(pool, train, 25, seed=0)
    assert len(digits) == 25 and bool((distances > 0).all())
    with pytest.raises(InputError, match="--heldout"):
        memorisation.heldout_digits(train, train, 5, seed=0)


def test_the_exact_denoiser_of_16_digits_draws_copies_and_new_digits_are_not(tmp_path):
    result = run_python(["benchmarks/memorisation.py", "--run", "exact-16=analytic:mnist", "--num_samples", "12",
                         "--num_heldout", "100", "--heldout", "builtin:mnist-2k:train", "--num_shown", "4",
                         "--device", "cpu", "--output", str(tmp_path / "m.png"),
                         "--output_json", str(tmp_path / "m.json")], env={"OMP_NUM_THREADS": "1"}, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads((tmp_path / "m.json").read_text())
    row = record["rows"][0]
    assert (row["train_images"], row["heldout_images"]) == (16, 100)
    assert row["median_ratio"] < 0.1  # samples sit on training digits; new digits do not
    assert row["sample_near_copies"] == 1.0 and row["heldout_near_copies"] <= 0.05
    assert row["distinct_nearest"] <= 12 and row["sample_confidence"] > 0.9
    assert record["provenance"]["argv"][:2] == ["python", "benchmarks/memorisation.py"]
    assert (tmp_path / "m.png").stat().st_size > 10_000
