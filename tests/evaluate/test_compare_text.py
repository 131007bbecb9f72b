"""`sd-course compare` on text-to-image runs: each snapshot asked for each digit in turn, as `sd-course evaluate` asks,
and scored on prompt accuracy besides FID and friends; `--reuse` only at the same guidance.

    python -m pytest tests/evaluate/test_compare_text.py -q -x

Real files throughout: tiny untrained 32x32 grayscale StableDiffusionPipelines saved to disk (their samples crop to
MNIST's 28x28, as the mini-SD's do), the shipped classifier, the package's 2,000 MNIST digits as the reference.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sd_course.app import cli
from sd_course.core.errors import InputError
from sd_course.evaluate import evaluation
from sd_course.evaluate.metrics import FEATURE_NAME

FID = f"fid_{FEATURE_NAME}"
BUILTIN = "builtin:mnist-2k:train"
SCORING = ["--num_samples", "20", "--reference", BUILTIN, "--num_reference", "200", "--kid_subsets", "5",
           "--grid_columns", "4"]


def save_tiny_text_to_image(path: Path, seed: int = 0) -> Path:
    """An untrained StableDiffusionPipeline: 1x32x32 images, 4x16x16 latents, a tokenizer learnt from the captions."""
    from diffusers import DDPMScheduler

    from sd_course.core.models import build_conditional_unet, build_text_encoder, build_vae
    from sd_course.latent.text import digit_prompts, train_tokenizer
    from sd_course.latent.text_to_image import make_pipeline

    torch.manual_seed(seed)
    tokenizer = train_tokenizer([text for _, text in digit_prompts()] + [""], max_length=16)
    text_encoder = build_text_encoder("tiny-sd", vocab_size=len(tokenizer.get_vocab()), max_length=16,
                                      bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                      pad_token_id=tokenizer.pad_token_id)
    vae = build_vae("tiny-vae", resolution=32)
    unet = build_conditional_unet("tiny-sd", 16, 4, text_encoder.config.hidden_size)
    make_pipeline(vae, tokenizer, text_encoder, unet, DDPMScheduler(num_train_timesteps=100, clip_sample=False)
                  ).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def text_run(tmp_path_factory) -> Path:
    """A text-to-image run folder: snapshots epoch-0001/ and epoch-0002/ and the loss log (two steps an epoch)."""
    run = tmp_path_factory.mktemp("t2i") / "run"
    for epoch in (1, 2):
        save_tiny_text_to_image(run / f"epoch-{epoch:04d}", seed=epoch)
    (run / "logs").mkdir()
    (run / "logs" / "loss.jsonl").write_text("".join(
        json.dumps(dict(step=step, epoch=(step - 1) // 2, loss=0.5, train_seconds=30.0 * step)) + "\n"
        for step in range(1, 5)))
    return run


def test_compare_scores_a_text_to_image_run_as_evaluate_does_with_prompt_accuracy(text_run, tmp_path, capsys):
    """Each snapshot: digit i % 10 asked for in the training phrasings, DPM-Solver++ 25 steps and guidance 2 unless
    told otherwise; the row adds guidance_scale and prompt_accuracy and equals `sd-course evaluate`'s numbers. An
    unconditional 28x28 model compares beside it, without either."""
    from diffusers import DDPMPipeline, DDPMScheduler

    from sd_course.core.models import build_unet

    torch.manual_seed(0)
    pixel = tmp_path / "ddpm"
    DDPMPipeline(build_unet("tiny", resolution=28, channels=1), DDPMScheduler(num_train_timesteps=50)
                 ).save_pretrained(pixel)
    out = tmp_path / "cmp"
    assert cli.main(["compare", str(text_run), str(pixel), *SCORING, "--output_dir", str(out)]) == 0
    rows = json.loads((out / "compare.json").read_text())["results"]
    assert [(r["epoch"], r["step"]) for r in rows] == [(1, 2), (2, 4), (None, None)]
    for row in rows[:2]:
        assert row["guidance_scale"] == 2.0 and (row["sampler"], row["num_inference_steps"]) == ("dpm++", 25)
        assert 0 <= row["prompt_accuracy"] <= 1 and len(row["prompt_accuracy_per_digit"]) == 10
    assert "guidance_scale" not in rows[2] and "prompt_accuracy" not in rows[2]  # the unconditional model
    assert rows[0][FID] != rows[1][FID]
    assert (out / "metrics_vs_epoch.png").stat().st_size > 10_000
    grid = Image.open(out / "compare_grid.png")
    assert grid.height == 3 * 28 * 4  # three rows of 28x28 samples, each drawn 4x

    capsys.readouterr()
    evaluated = evaluation.evaluate(model=str(text_run / "epoch-0002"), reference=BUILTIN, num_reference=200,
                                    num_samples=20, show_progress=False)  # a snapshot has no card: guidance 2
    assert "guidance 2 (the model card's, or the default)" in capsys.readouterr().out
    assert rows[1][FID] == pytest.approx(evaluated[FID], rel=1e-6)
    assert rows[1]["prompt_accuracy"] == evaluated["prompt_accuracy"]


def test_reuse_keeps_a_text_row_only_at_the_same_guidance(text_run, tmp_path, capsys):
    fast = [*SCORING, "--num_inference_steps", "2"]
    first = tmp_path / "first"
    assert cli.main(["compare", str(text_run), *fast, "--output_dir", str(first)]) == 0
    earlier = str(first / "compare.json")
    assert cli.main(["compare", str(text_run), *fast, "--guidance_scale", "3", "--output_dir",
                     str(tmp_path / "w3"), "--reuse", earlier]) == 0
    assert "reused the scores of 0 of 2 models" in capsys.readouterr().out
    w3 = json.loads((tmp_path / "w3" / "compare.json").read_text())["results"]
    assert [r["guidance_scale"] for r in w3] == [3.0, 3.0]
    again = tmp_path / "again"
    assert cli.main(["compare", str(text_run), *fast, "--output_dir", str(again), "--reuse", earlier]) == 0
    assert "reused the scores of 2 of 2 models" in capsys.readouterr().out
    old = json.loads((first / "compare.json").read_text())["results"]
    new = json.loads((again / "compare.json").read_text())["results"]
    assert [{k: v for k, v in r.items() if k != "reused_from"} for r in new] == old  # prompt accuracy kept too
    # The grid's rows: the first 4 samples (digits 0-3), made anew with their own seeds and prompts.
    grids = [np.asarray(Image.open(folder / "compare_grid.png"), dtype=int) for folder in (first, again)]
    assert grids[0].shape == grids[1].shape and np.abs(grids[1] - grids[0]).max() <= 1


def test_bad_guidance_or_a_pixel_only_flag_is_one_clear_error(text_run, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert cli.main(["compare", str(text_run), *SCORING, "--guidance_scale", "0.5", "--output_dir", str(out)]) == 2
    assert "--guidance_scale 0.5 is below 1" in capsys.readouterr().err
    for flag in (["--eta", "0.5"], ["--timestep_spacing", "trailing"]):
        assert cli.main(["compare", str(text_run), *SCORING, *flag, "--output_dir", str(out)]) == 2
        err = capsys.readouterr().err
        assert "is a text-to-image model" in err and f"drop {flag[0]}" in err and err.count("\n") == 1
    assert not out.exists()  # refused before anything was sampled or written
    with pytest.raises(InputError, match="below 1"):
        evaluation.compare([str(text_run)], guidance_scale=0.0, output_dir=str(out))
