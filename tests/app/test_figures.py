"""Figures and the sample / trajectory / forward / schedules sub-commands: real files, opened and measured."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMPipeline, DDPMScheduler
from PIL import Image

from sd_course.app import figures
from sd_course.app.cli import main
from sd_course.core import images as image_io
from sd_course.core.errors import InputError
from sd_course.core.models import build_unet
from sd_course.core.schedulers import schedule_curves

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # numpy 2 notices from inside diffusers


@pytest.fixture(scope="module")
def ddpm_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("viz") / "pipe"
    torch.manual_seed(0)
    DDPMPipeline(unet=build_unet("tiny", resolution=16, channels=1),
                 scheduler=DDPMScheduler(num_train_timesteps=100)).save_pretrained(folder)
    return folder


def digits(n=5, channels=1, size=28):
    return torch.randint(0, 256, (n, channels, size, size), generator=torch.Generator().manual_seed(0),
                         dtype=torch.uint8)


# ----------------------------------------------------------------------------------------------------------------
# grids and images
# ----------------------------------------------------------------------------------------------------------------


def test_upscale_uses_whole_factors():
    assert image_io.upscale(Image.new("L", (28, 28))).size == (112, 112)
    assert image_io.upscale(Image.new("L", (32, 32))).size == (128, 128)
    assert image_io.upscale(Image.new("L", (200, 200))).size == (200, 200)


@pytest.mark.parametrize("channels", [1, 3])
def test_grid_of_small_images(channels):
    images = digits(5, channels)
    grid = image_io.image_grid(images)  # 5 images -> 3 columns x 2 rows, one empty cell
    cell = 112 + 2 * image_io.BORDER
    assert grid.size == (3 * cell, 2 * cell)
    # pixels survive exactly (nearest-neighbour upscaling): the centre of cell 0's first source pixel
    first = torch.tensor(grid.getpixel((image_io.BORDER + 1, image_io.BORDER + 1)))
    assert (first == images[0, :, 0, 0]).all() if channels == 3 else int(first[0]) == int(images[0, 0, 0, 0])
    assert grid.getpixel((2 * cell + cell // 2, cell + cell // 2)) == (0, 0, 0)  # the empty cell is black


def test_floats_in_model_range_are_accepted():
    x = torch.full((2, 1, 8, 8), -1.0)
    x[1] = 1.0
    pil = image_io.to_pil_images(x)
    assert pil[0].getpixel((0, 0)) == 0 and pil[1].getpixel((0, 0)) == 255


def test_save_images_one_png_each(tmp_path):
    paths = image_io.save_images(digits(3), tmp_path / "out")
    assert [p.name for p in paths] == ["00000.png", "00001.png", "00002.png"]
    assert Image.open(paths[0]).size == (28, 28) and Image.open(paths[0]).mode == "L"


def test_output_paths_are_checked_before_work(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(InputError, match="cannot write"):
        image_io.check_output_file(tmp_path / "file.txt" / "grid.png")
    with pytest.raises(InputError, match="suffixes"):
        image_io.check_output_file(tmp_path / "grid")
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(InputError, match="is a folder"):
        image_io.check_output_file(tmp_path / "dir.png")
    with pytest.raises(InputError, match="is a file, not a folder"):
        image_io.check_output_dir(tmp_path / "file.txt")
    assert image_io.check_output_file(tmp_path / "new" / "deep" / "grid.png").parent.is_dir()


# ----------------------------------------------------------------------------------------------------------------
# schedules and the forward process
# ----------------------------------------------------------------------------------------------------------------


def test_schedule_curves_match_the_closed_form():
    linear = schedule_curves("linear")
    assert torch.allclose(linear["alpha_bar"], torch.cumprod(1 - linear["beta"], 0))
    assert float(linear["alpha_bar"][-1]) == pytest.approx(4.04e-5, rel=0.01)  # nearly pure noise at t = T
    assert (linear["log_snr"].diff() < 0).all()  # the signal-to-noise ratio only falls
    cosine = schedule_curves("squaredcos_cap_v2")
    assert float(cosine["alpha_bar"][500]) > float(linear["alpha_bar"][500])  # cosine destroys more slowly
    assert float(schedule_curves("scaled_linear")["alpha_bar"][-1]) > 5e-4  # never quite pure noise in pixels
    with pytest.raises(InputError, match="unknown beta schedule 'cosine'"):
        schedule_curves("cosine")


def test_schedules_figure(tmp_path):
    path = figures.write_schedules(tmp_path / "schedules.png")
    image = Image.open(path)
    assert image.size == (1300, 420)
    with pytest.raises(InputError, match="unknown beta schedule"):
        figures.write_schedules(tmp_path / "bad.png", "linear,nope")


def test_forward_figure_from_the_builtin_digits_and_from_a_file(tmp_path):
    path = figures.write_forward(tmp_path / "forward.png", num_images=2, timesteps="0,500,999")
    assert Image.open(path).size[0] > Image.open(path).size[1]  # 3 columns, 2 rows
    Image.fromarray(digits(1, 3, 40)[0].permute(1, 2, 0).numpy()).save(tmp_path / "rgb.png")
    path = figures.write_forward(tmp_path / "forward_rgb.png", image=str(tmp_path / "rgb.png"), timesteps="0,999",
                             beta_schedule="squaredcos_cap_v2")
    assert Image.open(path).size[0] > 0


def test_forward_noise_follows_the_schedule():
    """x_t = sqrt(abar_t) x0 + sqrt(1-abar_t) eps: at t = 999 the image is (almost) pure unit noise."""
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler(num_train_timesteps=1000)
    x0 = torch.zeros(1, 1, 64, 64) + 0.5
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    late = scheduler.add_noise(x0, eps, torch.tensor([999]))
    assert abs(float(late.std()) - 1) < 0.05 and abs(float(late.mean())) < 0.05


@pytest.mark.parametrize("timesteps, message", [("0,1000", "outside 0..999"), ("a,b", "whole numbers"), ("", "empty")])
def test_bad_timesteps(tmp_path, timesteps, message):
    with pytest.raises(InputError, match=message):
        figures.write_forward(tmp_path / "f.png", timesteps=timesteps)


def test_forward_bad_image(tmp_path):
    with pytest.raises(InputError, match="is not a file"):
        figures.write_forward(tmp_path / "f.png", image=str(tmp_path / "nope.png"))


# ----------------------------------------------------------------------------------------------------------------
# trajectory
# ----------------------------------------------------------------------------------------------------------------


def test_trajectory_strip_and_gif(tmp_path):
    written = figures.write_trajectory("analytic:gaussian", "heun", num_inference_steps=10, num_images=2,
                                   num_frames=4, output_dir=tmp_path, show_progress=False)
    strip = Image.open(written["png"])
    assert strip.size[0] > strip.size[1] * 0.9  # 5 columns (4 frames + output) x 4 rows
    gif = Image.open(written["gif"])
    assert gif.n_frames == 19  # Heun: 10 steps = 19 model calls, one frame each
    assert gif.info["loop"] == 0


def test_trajectory_chosen_steps(tmp_path):
    written = figures.write_trajectory("analytic:gaussian", "ddim", num_inference_steps=10, num_images=1, steps="0,5,-1",
                                   output_dir=tmp_path, name="t", show_progress=False)
    assert written["png"].endswith("t.png") and written["gif"].endswith("t.gif")
    with pytest.raises(InputError, match="outside 0..9"):
        figures.write_trajectory("analytic:gaussian", "ddim", num_inference_steps=10, num_images=1, steps="0,10",
                             output_dir=tmp_path, show_progress=False)


# ----------------------------------------------------------------------------------------------------------------
# the sub-commands end to end
# ----------------------------------------------------------------------------------------------------------------


def test_cli_sample_grid_and_folder(ddpm_folder, tmp_path, capsys):
    rc = main(["sample", "--model", str(ddpm_folder), "--scheduler", "dpm++", "--num_inference_steps", "3",
               "--num_images", "5", "--batch_size", "2", "--seed", "1", "--output", str(tmp_path / "grid.png"),
               "--output_dir", str(tmp_path / "each")])
    assert rc == 0
    assert Image.open(tmp_path / "grid.png").size == (3 * (112 + 2 * image_io.BORDER), 2 * (112 + 2 * image_io.BORDER))
    assert len(list((tmp_path / "each").glob("*.png"))) == 5
    assert "wrote 5 images" in capsys.readouterr().out


def test_cli_sample_is_repeatable(ddpm_folder, tmp_path):
    for name in ("a", "b"):
        assert main(["sample", "--model", str(ddpm_folder), "--scheduler", "euler-a", "--num_inference_steps", "3",
                     "--num_images", "2", "--seed", "7", "--output", str(tmp_path / f"{name}.png")]) == 0
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


@pytest.mark.parametrize("args, message", [
    (["--scheduler", "nope"], "unknown scheduler 'nope'; use one of: ddpm"),
    (["--num_images", "0"], "--num_images must be at least 1"),
    (["--batch_size", "-1"], "--batch_size must be at least 1"),
    (["--num_inference_steps", "0"], "--num_inference_steps must be at least 1"),
    (["--scheduler", "ddim", "--num_inference_steps", "500"], "cannot take 500 steps"),
    (["--scheduler", "euler", "--eta", "0.5"], "--eta is DDIM's"),
    (["--output", "OUT/file.txt/grid.png"], "cannot write"),
    (["--output", "OUT/grid"], "suffixes"),
])
def test_cli_sample_bad_input(ddpm_folder, tmp_path, capsys, args, message):
    (tmp_path / "file.txt").write_text("x")
    args = [a.replace("OUT", str(tmp_path)) for a in args]
    rc = main(["sample", "--model", str(ddpm_folder), *args])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err


@pytest.mark.parametrize("steps", ["0", "-3"])
def test_cli_sample_rejects_a_bad_step_count_before_loading_the_model(steps, tmp_path, capsys, monkeypatch):
    """Issue 10: the count is checked first, like the scheduler name: no weights are read for a typo."""
    def must_not_load(*args, **kwargs):
        raise AssertionError("the model was loaded before --num_inference_steps was checked")

    monkeypatch.setattr(figures, "load_pipeline", must_not_load)
    for command in (["sample", "--output", str(tmp_path / "g.png")], ["trajectory", "--output_dir", str(tmp_path)]):
        rc = main([*command, "--model", "no/such-model", "--num_inference_steps", steps])
        err = capsys.readouterr().err
        assert rc == 2 and f"--num_inference_steps must be at least 1, got {steps}" in err, err
        assert "Traceback" not in err


def test_cli_sample_model_that_is_not_a_pipeline(tmp_path, capsys):
    assert main(["sample", "--model", str(tmp_path), "--output", str(tmp_path / "g.png")]) == 2
    assert "no model_index.json" in capsys.readouterr().err


def test_cli_trajectory_forward_schedules(tmp_path, capsys):
    assert main(["trajectory", "--model", "analytic:two-gaussians", "--scheduler", "dpm++", "--num_inference_steps",
                 "8", "--num_images", "2", "--output_dir", str(tmp_path)]) == 0
    assert (tmp_path / "trajectory.png").is_file() and (tmp_path / "trajectory.gif").is_file()
    assert main(["forward", "--timesteps", "0,250,999", "--num_images", "1", "--beta_schedule", "sigmoid",
                 "--output", str(tmp_path / "forward.png")]) == 0
    assert main(["schedules", "--output", str(tmp_path / "schedules.png")]) == 0
    assert main(["schedules", "--schedules", "linear,cosine", "--output", str(tmp_path / "s.png")]) == 2
    assert "unknown beta schedule 'cosine'" in capsys.readouterr().err
