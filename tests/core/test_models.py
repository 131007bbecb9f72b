"""U-Net presets: sizes, shapes, and the resolutions they can take."""

from __future__ import annotations

import json

import pytest
import torch

from sd_course.core.errors import InputError
from sd_course.core.models import (
    PRESETS,
    build_conditional_unet,
    build_text_encoder,
    build_unet,
    check_resolution,
    count_parameters,
    unet_config,
    use_bmm_attention,
)


def test_presets_sizes_and_shapes():
    assert count_parameters(build_unet("tiny")) < 100_000
    assert 1e6 < count_parameters(build_unet("mnist")) < 6e6
    for name, resolution, channels in [("tiny", 16, 1), ("mnist", 28, 1), ("tiny", 12, 3)]:
        model = build_unet(name, resolution, channels)
        x = torch.randn(2, channels, resolution, resolution)
        assert model(x, torch.tensor([0, 5])).sample.shape == x.shape


def test_config_file_and_folder(tmp_path):
    model = build_unet("tiny")
    model.save_config(tmp_path)
    assert unet_config(str(tmp_path))["block_out_channels"] == list(PRESETS["tiny"]["block_out_channels"])
    assert count_parameters(build_unet(str(tmp_path / "config.json"))) == count_parameters(model)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        unet_config(str(tmp_path / "bad.json"))
    (tmp_path / "vae.json").write_text(json.dumps({"_class_name": "AutoencoderKL"}))
    with pytest.raises(InputError, match="not a UNet2DModel"):
        unet_config(str(tmp_path / "vae.json"))
    with pytest.raises(InputError, match="neither a preset"):
        unet_config("no-such-preset")


def test_resolution_must_survive_the_downsampling():
    check_resolution(PRESETS["mnist"], 28)
    with pytest.raises(InputError, match="multiple of 4"):
        check_resolution(PRESETS["mnist"], 30)
    with pytest.raises(InputError, match="multiple of 2"):
        build_unet("tiny", resolution=15)


def test_bmm_attention_computes_the_same_and_is_not_saved(tmp_path):
    """The CPU training attention (plain matmuls) changes speed, not results, and is not written with the weights."""
    torch.manual_seed(0)
    text_encoder = build_text_encoder("tiny-sd", vocab_size=50, max_length=77)
    unet = build_conditional_unet("tiny-sd", cross_attention_dim=32)
    ids = torch.randint(2, 50, (2, 77))
    latents, t = torch.randn(2, 4, 8, 8), torch.tensor([10, 900])
    with torch.no_grad():
        fused_text = text_encoder(ids)[0]
        fused = unet(latents, t, encoder_hidden_states=fused_text).sample
    model = torch.nn.ModuleDict(dict(text_encoder=text_encoder, unet=unet))
    switched = use_bmm_attention(model)
    assert text_encoder.config._attn_implementation == "eager"
    assert switched == sum(1 for m in unet.modules() if type(m).__name__ == "Attention") + 1  # + the text layer
    with torch.no_grad():
        plain_text = text_encoder(ids)[0]
        plain = unet(latents, t, encoder_hidden_states=plain_text).sample
    assert torch.allclose(plain_text, fused_text, atol=1e-5) and torch.allclose(plain, fused, atol=1e-5)
    assert use_bmm_attention(model) == sum(1 for m in unet.modules() if type(m).__name__ == "Attention")
    text_encoder.save_pretrained(tmp_path)
    assert "eager" not in (tmp_path / "config.json").read_text()
