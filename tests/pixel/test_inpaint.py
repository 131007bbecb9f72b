"""Inpainting (sd_course.pixel.inpaint.inpaint, `sd-course inpaint`), proven on exact analytic denoisers: the known pixels
come back exactly, the hole is filled, and the fill agrees with the known part where the data say it must."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from sd_course.app.cli import main
from sd_course.core.data import to_uint8
from sd_course.core.errors import InputError
from sd_course.pixel.inpaint import inpaint, load_inpaint_inputs
from sd_course.pixel.pipeline import load_pipeline


def _half_mask(size: int) -> torch.Tensor:
    mask = torch.zeros(1, 1, size, size)
    mask[..., size // 2:, :] = 1  # white = fill: the lower half
    return mask


@pytest.mark.parametrize("scheduler, resample", [("ddpm", 1), ("ddim", 1), ("ddpm", 2)])
def test_known_pixels_exact_and_hole_filled(scheduler, resample):
    pipe = load_pipeline("analytic:gaussian", scheduler)  # N(0.2, 0.4^2) per pixel, 1x16x16
    images = torch.zeros(4, 1, 16, 16, dtype=torch.uint8)  # black: -1, far below the data's mean
    out = inpaint(pipe, images, _half_mask(16), num_inference_steps=20, resample=resample, show_progress=False)
    assert out.dtype == torch.uint8 and out.shape == images.shape
    assert torch.equal(out[..., :8, :], images[..., :8, :])  # known: exactly the input
    hole = out[..., 8:, :].float() / 127.5 - 1
    assert abs(hole.mean().item() - 0.2) < 0.1  # filled from the data distribution, not left black


def test_fill_agrees_with_the_known_part():
    """Two components, 0.3 N(0.4, 0.15^2) + 0.7 N(-0.4, 0.15^2), each a whole image: the known half tells which
    component an image is from, so a right inpainting fills the hole from the same one (unconditionally, 70% of
    the fills would come from the other)."""
    pipe = load_pipeline("analytic:two-gaussians", "ddpm")
    g = torch.Generator().manual_seed(0)
    known = to_uint8(0.4 + 0.15 * torch.randn(32, 1, 16, 16, generator=g))  # all from the minority component
    out = inpaint(pipe, known, _half_mask(16), num_inference_steps=50, seed=1, show_progress=False)
    hole_means = (out[..., 8:, :].float() / 127.5 - 1).mean(dim=(1, 2, 3))
    assert (hole_means > 0).float().mean().item() >= 0.9, hole_means


def test_seeds_repeat_and_differ():
    pipe = load_pipeline("analytic:gaussian", "ddpm")
    images = torch.full((2, 1, 16, 16), 128, dtype=torch.uint8)
    a = inpaint(pipe, images, _half_mask(16), num_inference_steps=10, seed=3, show_progress=False)
    b = inpaint(pipe, images, _half_mask(16), num_inference_steps=10, seed=3, batch_size=1, show_progress=False)
    c = inpaint(pipe, images, _half_mask(16), num_inference_steps=10, seed=4, show_progress=False)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_bad_inputs_name_the_fix():
    pipe = load_pipeline("analytic:gaussian", "ddpm")
    images = torch.zeros(1, 1, 16, 16, dtype=torch.uint8)
    with pytest.raises(InputError, match="resize it to 16x16"):
        inpaint(pipe, torch.zeros(1, 1, 28, 28, dtype=torch.uint8), _half_mask(28))
    with pytest.raises(InputError, match="only 0"):
        inpaint(pipe, images, _half_mask(16) * 0.5)
    with pytest.raises(InputError, match="nothing to fill"):
        inpaint(pipe, images, torch.zeros(16, 16))
    with pytest.raises(InputError, match="the mask has shape"):
        inpaint(pipe, images, torch.ones(1, 1, 8, 8))
    with pytest.raises(InputError, match="--scheduler ddpm"):
        inpaint(load_pipeline("analytic:gaussian", "dpm++"), images, _half_mask(16))


def _png(path, array, mode="L"):
    Image.fromarray(array.numpy(), mode).save(path)
    return str(path)


def test_cli_fills_a_digit_and_draws_the_figure(tmp_path, capsys):
    digit = torch.zeros(28, 28, dtype=torch.uint8)
    digit[4:24, 12:16] = 255  # a "1"
    mask = torch.zeros(28, 28, dtype=torch.uint8)
    mask[14:] = 255
    image, mask_png = _png(tmp_path / "digit.png", digit), _png(tmp_path / "mask.png", mask)
    out, fig = tmp_path / "out.png", tmp_path / "fig.png"
    assert main(["inpaint", "--model", "analytic:mnist", "--image", image, "--mask", mask_png, "--output", str(out),
                 "--num_inference_steps", "10", "--figure", str(fig)]) == 0
    filled = torch.from_numpy(np.array(Image.open(out), dtype=np.uint8))
    assert torch.equal(filled[:14], digit[:14]) and not torch.equal(filled[14:], digit[14:])
    assert Image.open(fig).width > 3 * 28
    assert main(["inpaint", "--model", "analytic:mnist", "--image", image, "--mask", mask_png, "--output",
                 str(tmp_path / "row.png"), "--num_inference_steps", "5", "--num_images", "3"]) == 0
    assert Image.open(tmp_path / "row.png").width > 3 * Image.open(tmp_path / "row.png").height - 10


def test_cli_errors_on_wrong_sizes_modes_and_masks(tmp_path, capsys):
    pipe = load_pipeline("analytic:mnist")
    black = torch.zeros(28, 28, dtype=torch.uint8)
    mask = black.clone()
    mask[14:] = 255
    cases = {
        "size": (_png(tmp_path / "big.png", torch.zeros(32, 32, dtype=torch.uint8)), _png(tmp_path / "m.png", mask),
                 "resize it first"),
        "colour": (_png(tmp_path / "rgb.png", torch.stack([black, black + 9, black], -1), "RGB"),
                   str(tmp_path / "m.png"), "convert it first"),
        "grey mask": (_png(tmp_path / "d.png", black), _png(tmp_path / "grey.png", black + 128), "black and white"),
        "mask size": (str(tmp_path / "d.png"), _png(tmp_path / "m32.png", torch.zeros(32, 32, dtype=torch.uint8)),
                      "draw the mask at the image's size"),
        "missing": (str(tmp_path / "nope.png"), str(tmp_path / "m.png"), "is not a file"),
    }
    for name, (image, mask_path, message) in cases.items():
        with pytest.raises(InputError, match=message):
            load_inpaint_inputs(pipe, image, mask_path)
    # the same through the CLI: one line, exit code 2
    assert main(["inpaint", "--model", "analytic:mnist", "--image", cases["size"][0], "--mask",
                 str(tmp_path / "m.png"), "--output", str(tmp_path / "o.png")]) == 2
    assert "resize it first" in capsys.readouterr().err
    # an RGB image of grey pixels is a grayscale image saved as RGB: accepted
    grey_rgb = _png(tmp_path / "greyrgb.png", torch.stack([black] * 3, -1), "RGB")
    pixels, m = load_inpaint_inputs(pipe, grey_rgb, str(tmp_path / "m.png"))
    assert pixels.shape == (1, 1, 28, 28) and m.sum() == 14 * 28
