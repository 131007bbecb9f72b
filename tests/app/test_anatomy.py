"""The U-Net anatomy (sd_course/app/anatomy.py) on tiny real diffusers U-Nets built here, and on the shipped ones:
parameter counts add up to the model's, the shapes the hooks saw are the config's and those of calling each block on
its own, the attention layers are where and how wide they are, the skips and the time path are the model's;
`sd-course anatomy` end to end in a fresh process, and a wrong folder is one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel
from diffusers.models.resnet import ResnetBlock2D
from tiny_pipelines import tiny_stable_diffusion

from sd_course.app.anatomy import (
    check_model,
    forward_inputs,
    load_unet,
    measure,
    record_forward,
    sinusoid,
    write_anatomy_lesson,
)
from sd_course.app.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")


def tiny_pixel_pipeline(folder: Path) -> Path:
    """A DDPMPipeline folder: 1x8x8 images, two levels (8x8, 4x4), self-attention at 4x4 (2 heads of 8)."""
    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"), attention_head_dim=8, norm_num_groups=4)
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=100)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("anatomy")
    return {"pixel": tiny_pixel_pipeline(root / "ddpm"), "text": tiny_stable_diffusion(root / "sd")}


@pytest.fixture(scope="module")
def anatomies(folders) -> dict[str, dict]:
    return {"pixel": measure(folders["pixel"] / "unet", "pixel", device="cpu"),
            "text": measure(folders["text"] / "unet", "text", device="cpu")}


@pytest.mark.parametrize("kind", ["pixel", "text"])
def test_parameter_counts_add_up_to_the_model(folders, anatomies, kind):
    a = anatomies[kind]
    unet = load_unet(folders[kind] / "unet")
    assert a["total_params"] == sum(p.numel() for p in unet.parameters())
    assert sum(a["params_by_top_level_module"].values()) == a["total_params"]
    listed = a["before_blocks"] + a["blocks"] + a["after_blocks"]  # every module the table and the figure show
    assert sum(r["params"] for r in listed) == a["total_params"]
    for block in a["blocks"]:
        assert sum(p["params"] for p in block["parts"]) == block["params"], block["name"]
    tp = a["time_embedding"]
    assert tp["mlp"]["params"] == a["params_by_top_level_module"]["time_embedding"]
    assert tp["per_resnet_params"] == sum(m.time_emb_proj.weight.numel() + m.time_emb_proj.bias.numel()
                                          for m in unet.modules() if isinstance(m, ResnetBlock2D))


@pytest.mark.parametrize("kind", ["pixel", "text"])
def test_shapes_are_the_configs(folders, anatomies, kind):
    a = anatomies[kind]
    config = load_unet(folders[kind] / "unet").config
    widths, size = list(config.block_out_channels), config.sample_size
    assert a["inputs"]["sample"] == [1, config.in_channels, size, size]
    assert a["output"] == [1, config.out_channels, size, size]
    blocks = {b["name"]: b for b in a["blocks"]}
    for i, width in enumerate(widths):
        last = i == len(widths) - 1
        down = blocks[f"down_blocks.{i}"]
        assert down["in"] == [1, widths[max(i - 1, 0)], size >> i, size >> i]
        assert down["out"] == [1, width, size >> (i + (not last)), size >> (i + (not last))]
        assert down["resolution"] == [size >> i, size >> i]
        up = blocks[f"up_blocks.{len(widths) - 1 - i}"]  # up block j works at the level of down block n - 1 - j
        assert up["resolution"] == [size >> i, size >> i]
        assert up["out"][1] == width and up["out"][2] == size >> max(i - 1, 0)
    deepest = size >> (len(widths) - 1)
    assert blocks["mid_block"]["in"] == blocks["mid_block"]["out"] == [1, widths[-1], deepest, deepest]
    tp = a["time_embedding"]
    assert tp["sinusoid"]["out"] == [1, widths[0]] and tp["mlp"]["out"] == [1, 4 * widths[0]]


@pytest.mark.parametrize("kind", ["pixel", "text"])
@torch.no_grad()
def test_shapes_are_those_of_calling_each_block_on_its_own(folders, anatomies, kind):
    a = anatomies[kind]
    unet = load_unet(folders[kind] / "unet")
    inputs, _ = forward_inputs(unet, folders[kind] / "unet")
    temb = unet.time_embedding(unet.time_proj(inputs["timestep"]))
    context = {"encoder_hidden_states": inputs["encoder_hidden_states"]} if kind == "text" else {}
    for block in a["blocks"]:
        module = unet.get_submodule(block["name"])
        extra = context if getattr(module, "has_cross_attention", False) else {}
        h = torch.randn(block["in"])
        if block["name"].startswith("up_blocks."):
            out = module(h, tuple(torch.randn(s) for s in block["skips_in"]), temb=temb, **extra)
        else:
            out = module(h, temb=temb, **extra)
        out, skips = (out[0], out[1]) if isinstance(out, tuple) else (out, None)
        assert list(out.shape) == block["out"], block["name"]
        if skips is not None:
            assert [list(s.shape) for s in skips] == block["skips_out"], block["name"]
        for part in block["parts"]:
            if part["name"].split(".")[-2] != "attentions":  # a part's own call: resnets and resamplers
                sub = unet.get_submodule(part["name"])
                y = sub(torch.randn(part["in"]), temb) if isinstance(sub, ResnetBlock2D) else sub(
                    torch.randn(part["in"]))
                assert list(y.shape) == part["out"], part["name"]


def test_attention_layers_where_and_how_wide(folders, anatomies):
    pixel, text = anatomies["pixel"], anatomies["text"]
    # pixel: one Attention after the resnet of the 4x4 down block, one in the mid block, two in the 4x4 up block
    assert pixel["num_self_attention"] == 4 and pixel["num_cross_attention"] == 0
    for layer in pixel["attention"]:
        assert layer["kind"] == "self" and layer["resolution"] == [4, 4]
        assert layer["query_positions"] == layer["keys"] == 16
        assert (layer["heads"], layer["head_dim"]) == (2, 8)  # 16 channels / attention_head_dim 8
    # text: four Transformer2DModels at 4x4, each with attn1 (self) and attn2 (cross over the 16 tokens)
    tokens = json.loads((folders["text"] / "tokenizer" / "tokenizer_config.json").read_text())["model_max_length"]
    assert text["num_self_attention"] == text["num_cross_attention"] == 4
    assert text["inputs"]["encoder_hidden_states"] == [1, tokens, 32]
    for layer in text["attention"]:
        assert layer["name"].endswith("attn1" if layer["kind"] == "self" else "attn2")
        assert layer["resolution"] == [4, 4] and layer["query_positions"] == 16
        assert layer["keys"] == (tokens if layer["kind"] == "cross" else 16)
        assert layer["heads"] * layer["head_dim"] == 64
    assert "4 cross-attention layers at 4x4 (16 positions x 16 tokens" in text["summary"]


@pytest.mark.parametrize("kind", ["pixel", "text"])
def test_skips_and_time_path_are_the_models(folders, anatomies, kind):
    a = anatomies[kind]
    unet = load_unet(folders[kind] / "unet")
    up_resnets = sum(len(b.resnets) for b in unet.up_blocks)
    assert len(a["skips"]) == up_resnets  # each up-block ResNet reads one skip
    assert a["skips"][0] == {"from": f"down_blocks.{len(unet.down_blocks) - 1}", "to": "up_blocks.0",
                             "shape": a["blocks"][len(unet.down_blocks) - 1]["skips_out"][-1]}
    assert a["skips"][-1]["from"] == "conv_in" and a["skips"][-1]["to"] == f"up_blocks.{len(unet.up_blocks) - 1}"
    assert a["time_embedding"]["num_resnets"] == sum(isinstance(m, ResnetBlock2D) for m in unet.modules())
    t = torch.tensor([0, 37, 500])
    proj = unet.time_proj
    written = sinusoid(t, proj.num_channels, proj.flip_sin_to_cos, proj.downscale_freq_shift)
    torch.testing.assert_close(written.float(), proj(t), atol=1e-5, rtol=1e-5)


def test_the_hooks_do_not_change_the_prediction(folders):
    unet = load_unet(folders["text"] / "unet")
    inputs, _ = forward_inputs(unet, folders["text"] / "unet")
    with torch.no_grad():
        plain = unet(**inputs).sample
    records, hooked = record_forward(unet, inputs)
    assert torch.equal(plain, hooked)
    assert not any(m._forward_hooks for m in unet.modules())  # removed afterwards


def test_the_shipped_unets_and_the_docs_figure(tmp_path):
    """Both shipped U-Nets in a few seconds; the numbers docs/figures/anatomy/anatomy.json holds are the ones measured
    now (the docs quote them)."""
    shipped = REPO / "pipelines" / "ddpm-mnist", REPO / "pipelines" / "mini-sd-mnist"
    if not all(p.is_dir() for p in shipped):
        pytest.skip("the shipped pipelines are not in this checkout")
    started = time.perf_counter()
    numbers = write_anatomy_lesson(str(shipped[0]), str(shipped[1]), str(tmp_path), device="cpu")
    assert time.perf_counter() - started < 30  # about 1 s on 2 CPU cores
    pixel, text = numbers["models"]
    assert (pixel["class"], text["class"]) == ("UNet2DModel", "UNet2DConditionModel")
    assert pixel["total_params"] == 2_734_945  # the mnist-small preset, as sd_course/core/models.py says
    assert {(a["kind"], a["query_positions"], a["keys"]) for a in pixel["attention"]} == {("self", 49, 49)}
    assert {(a["kind"], a["query_positions"], a["keys"]) for a in text["attention"]} == {("self", 16, 16),
                                                                                          ("cross", 16, 77)}
    docs = json.loads((REPO / "docs" / "figures" / "anatomy" / "anatomy.json").read_text())
    for measured, quoted in zip(numbers["models"], docs["models"]):
        for key in ("total_params", "num_self_attention", "num_cross_attention", "params_by_top_level_module",
                    "attention", "skips", "time_embedding"):
            assert measured[key] == quoted[key], (measured["model"], key)


def test_sd_course_anatomy_end_to_end(folders, tmp_path):
    out = tmp_path / "figs"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", "sd_course", "anatomy", "--pixel_model", str(folders["pixel"]),
                             "--text_model", str(folders["text"]), "--prompt", "a 7", "--device", "cpu",
                             "--output_dir", str(out)], capture_output=True, text=True, cwd=str(REPO), env=env,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["anatomy.json", "anatomy.png"]
    numbers = json.loads((out / "anatomy.json").read_text())
    assert [m["class"] for m in numbers["models"]] == ["UNet2DModel", "UNet2DConditionModel"]
    assert numbers["provenance"]["argv"][:2] == ["sd-course", "anatomy"]
    assert numbers["models"][1]["inputs"]["context"]["prompt"] == "a 7"
    assert "sum of the top-level modules" in result.stdout
    assert "cross-attention: 16 queries x 16 tokens" in result.stdout
    assert (out / "anatomy.png").read_bytes()[:4] == b"\x89PNG"


def refused(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len([line for line in err.splitlines() if "error:" in line]) == 1 and "Traceback" not in err, err
    return err


def test_a_missing_or_wrong_folder_is_one_line_and_writes_nothing(folders, tmp_path, capsys):
    out = tmp_path / "never"
    err = refused(["anatomy", "--pixel_model", str(tmp_path / "nope"), "--output_dir", str(out)], capsys)
    assert "--pixel_model" in err and "is not a folder" in err and not out.exists()
    err = refused(["anatomy", "--pixel_model", str(folders["text"]), "--text_model", "none",
                   "--output_dir", str(out)], capsys)
    assert "holds a UNet2DConditionModel, not a UNet2DModel: give it as --text_model" in err and not out.exists()
    err = refused(["anatomy", "--pixel_model", "none", "--text_model", str(tmp_path), "--output_dir", str(out)], capsys)
    assert "holds no U-Net" in err and not out.exists()
    with pytest.raises(Exception, match="UNet2DModel"):
        check_model(str(folders["text"]), "--pixel_model", "UNet2DModel")
