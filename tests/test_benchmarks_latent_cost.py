"""benchmarks/latent_cost.py: a training step of the shipped latent model against the shipped pixel model, and of the
latent model with its text encoder on transformers' fused attention, timed interleaved in one process.

    python -m pytest tests/test_benchmarks_latent_cost.py -q
"""

from __future__ import annotations

import json

from conftest import REPO, run_python


def test_latent_cost_times_the_three_steps_and_records_their_recipes(tmp_path):
    out = tmp_path / "cost.json"
    result = run_python(["benchmarks/latent_cost.py", "--rounds", "1", "--output_json", str(out)],
                        env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads(out.read_text())
    names = ("pixel", "latent", "latent_fused_text_attention")
    assert all(record[f"{name}_images_per_s"] > 0 for name in names)
    assert record["latent_speedup"] == round(record["latent_images_per_s"] / record["pixel_images_per_s"], 2)
    assert record["text_attention_speedup"] == round(
        record["latent_images_per_s"] / record["latent_fused_text_attention_images_per_s"], 2)
    assert record["batch"] == {"pixel": 64, "latent": 256} and record["caption_tokens"] == 77
    assert record["provenance"]["argv"][:2] == ["python", "benchmarks/latent_cost.py"]
    assert "training/configs/mini-sd-mnist.yaml" in record["provenance"]["inputs"]
    assert (REPO / "pipelines/mini-sd-mnist/unet/config.json").is_file()
