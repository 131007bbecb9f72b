"""benchmarks/gan_at_convergence.py end to end, tiny: GANs trained by the package's loop with a snapshot per epoch,
every snapshot scored, the shipped diffusion model scored on several sample sets, one result with provenance.

    python -m pytest tests/test_benchmarks_gan_at_convergence.py -q
"""

from __future__ import annotations

import json
import math

from conftest import run_python


def test_a_curve_per_gan_seed_and_a_spread_per_kind(tmp_path):
    work = tmp_path / "work"
    argv = ["benchmarks/gan_at_convergence.py", "--dataset_name", "builtin:mnist-2k", "--max_train_samples", "128",
            "--reference", "builtin:mnist-2k:train", "--epochs", "2", "--gan_seeds", "0,1", "--sampling_seeds", "0,1",
            "--num_samples", "40", "--diffusion_steps", "2", "--workdir", str(work),
            "--output", str(tmp_path / "g.png"), "--output_json", str(tmp_path / "g.json")]
    result = run_python(argv, env={"OMP_NUM_THREADS": "1"}, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads((tmp_path / "g.json").read_text())
    assert [run["seed"] for run in record["gan"]] == [0, 1]
    for run in record["gan"]:
        assert [row["epoch"] for row in run["curve"]] == [1, 2]
        assert run["steps"] == 2 * 2  # 128 digits in batches of 64, two epochs
        assert run["final"] == run["curve"][-1] and run["best_fid"] == min(r["fid"] for r in run["curve"])
        assert (work / f"gan-seed{run['seed']}" / "epoch-0001" / "config.json").is_file()
    assert record["gan"][0]["curve"] != record["gan"][1]["curve"]  # two seeds, two different GANs
    assert [row["sampling_seed"] for row in record["diffusion"]] == [0, 1]
    assert record["diffusion"][0]["fid"] != record["diffusion"][1]["fid"]  # two different sample sets
    summary = record["summary"]
    assert summary["gan_final_fid"]["n"] == 2 and summary["diffusion_fid"]["n"] == 2
    assert all(math.isfinite(summary[k]["mean"]) for k in ("gan_final_fid", "diffusion_fid"))
    assert summary["gan_sampling_images_per_s"] > summary["diffusion_sampling_images_per_s"]  # 1 call against 2
    assert record["provenance"]["argv"][:2] == ["python", "benchmarks/gan_at_convergence.py"]
    assert "pipelines/ddpm-mnist/unet/diffusion_pytorch_model.safetensors" in record["provenance"]["inputs"]
    assert (tmp_path / "g.png").stat().st_size > 10_000

    again = run_python(argv, env={"OMP_NUM_THREADS": "1"}, timeout=300)  # trained runs are read back, not retrained
    assert again.returncode == 0 and "already trained, read back" in again.stdout, again.stderr[-2000:]
    assert json.loads((tmp_path / "g.json").read_text())["gan"] == record["gan"]
