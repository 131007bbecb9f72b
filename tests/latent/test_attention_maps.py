"""Cross-attention maps (sd_course/latent/attention_maps.py) on a tiny real StableDiffusionPipeline: the recorded maps
are softmax rows over the tokens, sit at the resolution of their block, are the layer's own probabilities, and
recording them leaves the image bit for bit unchanged; `sd-course attention` end to end in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO
from diffusers import UNet2DConditionModel
from tiny_pipelines import tiny_stable_diffusion

from sd_course.app.cli import main as cli
from sd_course.latent.attention_maps import (
    RecordingAttnProcessor,
    AttentionRecorder,
    attention_probabilities,
    cross_attention_layers,
    prompt_tokens,
    record_attention,
    recording_cross_attention,
    to_columns,
)
from sd_course.latent.text_to_image import load_text_to_image_pipeline

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")
PROMPT = "a 7"


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    return tiny_stable_diffusion(tmp_path_factory.mktemp("attention") / "sd")


@pytest.fixture(scope="module")
def pipe(tiny_folder):
    """The tiny pipeline with DDIM and a U-Net that has cross-attention at both levels (8x8 and 4x4 latents)."""
    pipe = load_text_to_image_pipeline(str(tiny_folder), "ddim")
    torch.manual_seed(1)
    pipe.unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32, attention_head_dim=8,
        norm_num_groups=32).eval()
    return pipe


def expected_resolution(layer: str, latent: int, levels: int) -> int:
    """Down block i works at latent / 2^i, the middle block at the coarsest level, up block j at latent / 2^(n-1-j)."""
    block, second = layer.split(".")[:2]
    index = int(second) if second.isdigit() else 0
    depth = {"down_blocks": index, "mid_block": levels - 1, "up_blocks": levels - 1 - index}[block]
    return latent // 2 ** depth


def test_maps_are_softmax_rows_at_the_resolution_of_their_block(pipe):
    recorder, image = record_attention(pipe, PROMPT, num_inference_steps=3, guidance_scale=2.0, seed=0)
    maps = recorder.stacked()
    assert list(maps) == cross_attention_layers(pipe.unet)  # in the order the forward pass runs them:
    assert [name.split(".")[0] for name in maps] == ["down_blocks"] * 2 + ["mid_block"] + ["up_blocks"] * 4
    resolutions = set()
    for name, m in maps.items():
        calls, positions, tokens = m.shape
        assert calls == 3 and tokens == pipe.tokenizer.model_max_length  # one U-Net call per step (CFG in one batch)
        side = expected_resolution(name, pipe.unet.config.sample_size, len(pipe.unet.config.block_out_channels))
        assert positions == side * side, (name, positions, side)
        resolutions.add(side)
        assert torch.allclose(m.sum(dim=-1), torch.ones(calls, positions), atol=1e-5)  # each position: sums to 1
        assert (m >= 0).all()
    assert resolutions == {8, 4}
    assert recorder.timesteps == [float(t) for t in pipe.scheduler.timesteps]
    assert recorder.latent_hw == (8, 8) and image.shape == (3, 16, 16)


def test_the_recorded_maps_are_softmax_of_q_k_over_sqrt_d_and_only_the_conditional_half(pipe):
    """One cross-attention layer called directly: the recorded map is softmax(Q K^T / sqrt(d)) computed by hand from
    the layer's weights, averaged over heads, for the last (conditional) row of the batch; the output is the layer's."""
    name = cross_attention_layers(pipe.unet)[0]
    attn = pipe.unet.get_submodule(name)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 64, attn.to_q.in_features, generator=g)  # [uncond, cond] queries of 64 positions
    c = torch.randn(2, 16, attn.to_k.in_features, generator=g)  # their 16 token vectors
    with torch.no_grad():
        plain = attn(x, encoder_hidden_states=c)
        recorder = AttentionRecorder([name])
        attn.set_processor(RecordingAttnProcessor(attn.processor, name, recorder))
        try:
            recorded_out = attn(x, encoder_hidden_states=c)
        finally:
            attn.set_processor(attn.processor.inner)
        heads, d = attn.heads, attn.to_q.out_features // attn.heads
        q = attn.to_q(x).view(2, 64, heads, d).transpose(1, 2)
        k = attn.to_k(c).view(2, 16, heads, d).transpose(1, 2)
        by_hand = torch.softmax(q @ k.transpose(-1, -2) / d ** 0.5, dim=-1).mean(dim=1)  # (2, 64, 16)
    assert torch.equal(plain, recorded_out)
    assert torch.allclose(recorder.calls[-1]["maps"][name], by_hand[1], atol=1e-6)
    assert not torch.allclose(by_hand[0], by_hand[1], atol=1e-3)  # the halves differ: the right one was kept
    assert torch.allclose(attention_probabilities(attn, x, c), by_hand, atol=1e-6)


def test_recording_does_not_change_the_image_and_puts_the_processors_back(pipe):
    before = {name: type(p) for name, p in pipe.unet.attn_processors.items()}
    _, recorded = record_attention(pipe, PROMPT, num_inference_steps=3, guidance_scale=2.0, seed=5)
    plain = pipe(PROMPT, num_inference_steps=3, guidance_scale=2.0, generator=torch.Generator().manual_seed(5),
                 output_type="pt").images[0]
    assert torch.equal(recorded, plain.float().cpu())  # bit for bit
    assert {name: type(p) for name, p in pipe.unet.attn_processors.items()} == before
    with recording_cross_attention(pipe.unet) as recorder:
        assert all(isinstance(p, RecordingAttnProcessor) == name.startswith(tuple(recorder.layers))
                   for name, p in pipe.unet.attn_processors.items())


def test_tokens_are_the_tokenizers_and_padding_is_one_column_at_any_length(pipe):
    tokenizer = pipe.tokenizer
    tokens = prompt_tokens(tokenizer, PROMPT)
    ids = tokenizer(PROMPT, padding="max_length", max_length=tokenizer.model_max_length).input_ids
    assert tokens["ids"] == ids and tokens["num_real"] == 4  # <start> a 7 <end>, then padding
    assert tokens["labels"] == ["<start>", "a", "7", "<end>"]
    assert tokens["labels"][1:-1] == [tokenizer.decode([i]).strip() for i in ids[1:3]] == PROMPT.split()
    long = prompt_tokens(tokenizer, "a very long prompt of many many letters")  # truncated: no padding left
    assert long["num_real"] == tokenizer.model_max_length and long["labels"][-1] == "<end>"
    for length, real in ((16, 4), (77, 6), (16, 16)):  # e.g. a 77-token tokenizer: mostly padding
        probs = torch.softmax(torch.randn(3, 10, length), dim=-1)
        columns = to_columns(probs, real)
        assert columns.shape == (3, 10, real + 1)
        assert torch.allclose(columns.sum(dim=-1), torch.ones(3, 10), atol=1e-5)
        assert torch.allclose(columns[..., -1], probs[..., real:].sum(dim=-1))


def test_cli_attention_in_a_fresh_process(tiny_folder, tmp_path):
    out = tmp_path / "figures"
    out.mkdir()
    (out / "mine.txt").write_text("not the lesson's")  # a file the command did not write: it stays
    script = Path(sys.executable).parent / "sd-course"
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "sd_course"]
    result = subprocess.run(command + ["attention", "--model", str(tiny_folder), "--prompt", PROMPT,
                                       "--num_inference_steps", "3", "--num_rows", "2", "--device", "cpu",
                                       "--output_dir", str(out)],
                            capture_output=True, text=True, timeout=300, cwd=str(REPO))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "cross-attention share of" in result.stdout and "attention.png" in result.stdout
    for name in ("attention.png", "per_layer.png"):
        assert (out / name).stat().st_size > 5000, name
    numbers = json.loads((out / "attention.json").read_text())
    assert numbers["prompt"] == PROMPT and numbers["tokens"] == ["<start>", "a", "7", "<end>"]
    assert numbers["columns"] == numbers["tokens"] + ["pad"] and numbers["num_padding"] == 12
    assert numbers["scheduler"] == "DDIMScheduler" and len(numbers["timesteps"]) == 3
    assert numbers["columns"][numbers["digit_column"]] == "7"
    prov = numbers["provenance"]  # a result like the benchmarks': the command and the weights that made the maps
    assert prov["argv"][:2] == ["sd-course", "attention"] and prov["device"] and prov["date"]
    assert sorted(Path(name).parent.name for name in prov["inputs"]) == ["text_encoder", "unet"]
    assert len(numbers["layers"]) == 4  # tiny_stable_diffusion: 1 in the 4x4 down block, 1 in the middle, 2 up
    for layer in numbers["layers"]:
        assert layer["resolution"] == [4, 4] and abs(sum(layer["share"]) - 1) < 1e-3
        assert all(abs(sum(row) - 1) < 1e-3 for row in layer["share_per_step"])
    assert (out / "mine.txt").read_text() == "not the lesson's"


def test_cli_attention_refuses_what_has_no_cross_attention(tmp_path, tiny_folder, capsys):
    pixel = tmp_path / "pixel"
    pixel.mkdir()
    (pixel / "model_index.json").write_text(json.dumps({"_class_name": "DDPMPipeline",
                                                        "unet": ["diffusers", "UNet2DModel"]}))
    cases = [(["--model", str(pixel)], "without a text encoder (a pixel model)"),
             (["--model", str(tmp_path / "missing")], "is not a folder"),
             (["--model", str(tmp_path)], "no model_index.json"),
             (["--model", str(tiny_folder), "--prompt", "  "], "--prompt is empty")]
    for flags, message in cases:
        assert cli(["attention", *flags, "--output_dir", str(tmp_path / "f")]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "f").exists()  # refused before anything was written
