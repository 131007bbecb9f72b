"""Pictures: sample grids, the reverse process step by step, the forward process, and the noise schedules.

    sd-course sample     --model runs/mnist --scheduler dpm++ --num_images 64 --output grid.png
    sd-course trajectory --model runs/mnist --scheduler ddim --num_images 4 --output_dir figures/
    sd-course forward    --timesteps 0,50,100,250,500,750,999 --output forward.png
    sd-course schedules  --output schedules.png

Grids use ``diffusers.utils.make_image_grid``; figures with axes and titles use matplotlib's object API (no pyplot,
so nothing depends on a display or a global backend). Images come in as uint8 tensors (N, C, H, W) or as floats in
the model range [-1, 1]; 28x28 digits are enlarged with nearest-neighbour pixels so that they can be seen.
(The course's questions on noise schedules are answered in ``sd_course/schedulers.py``; on the forward and reverse
process in ``sd_course/analytic.py`` and ``sd_course/pipeline.py``; all are collected in ``docs/sampling.md``.)
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageOps

from sd_course.data import to_uint8
from sd_course.errors import InputError
from sd_course.pipeline import evenly_spaced
from sd_course.schedulers import check_steps_value

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
MIN_CELL = 112  # enlarge small images to at least this many pixels a side (28x28 digits: x4)
BORDER = 2  # grey pixels around each cell of a grid
BORDER_GREY = 96


# ----------------------------------------------------------------------------------------------------------------
# 1. Output paths: checked before any slow work
# ----------------------------------------------------------------------------------------------------------------


def check_output_file(path, suffixes=IMAGE_SUFFIXES) -> Path:
    """A writable file path with a known suffix; creates its folder. InputError naming the fix otherwise."""
    path = Path(path).expanduser()
    if path.suffix.lower() not in suffixes:
        raise InputError(f"output {str(path)!r} needs one of the suffixes {list(suffixes)} (e.g. {path.stem or 'out'}"
                         f"{suffixes[0]})")
    if path.is_dir():
        raise InputError(f"output {str(path)!r} is a folder; give a file name such as {path / ('grid' + suffixes[0])}")
    _make_writable_folder(path.parent, f"the folder of {str(path)!r}")
    return path


def check_output_dir(path) -> Path:
    """A folder we can write into (created if missing)."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise InputError(f"--output_dir {str(path)!r} is a file, not a folder; choose another path")
    _make_writable_folder(path, f"--output_dir {str(path)!r}")
    return path


def _make_writable_folder(folder: Path, what: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".sd_course_write_test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise InputError(f"cannot write to {what}: {e.strerror or e}; choose a writable location") from e


# ----------------------------------------------------------------------------------------------------------------
# 2. Images and grids
# ----------------------------------------------------------------------------------------------------------------


def as_uint8(images: torch.Tensor) -> torch.Tensor:
    """uint8 stays; floats are taken to be in the model range [-1, 1] (clipped)."""
    return images if images.dtype == torch.uint8 else to_uint8(images.detach().float().cpu())


def to_pil_images(images: torch.Tensor) -> list[Image.Image]:
    """(N, C, H, W) uint8 or [-1, 1] floats -> PIL images (mode "L" for 1 channel, "RGB" for 3)."""
    images = as_uint8(images).cpu()
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise InputError(f"expected images of shape (N, 1 or 3, H, W), got {tuple(images.shape)}")
    array = images.permute(0, 2, 3, 1).numpy()
    return [Image.fromarray(a[..., 0], "L") if a.shape[-1] == 1 else Image.fromarray(a, "RGB") for a in array]


def upscale(image: Image.Image, min_size: int = MIN_CELL) -> Image.Image:
    """Enlarge by a whole factor with nearest-neighbour pixels (no blur), so the shorter side is >= ``min_size``."""
    factor = max(1, math.ceil(min_size / min(image.size)))
    return image.resize((image.width * factor, image.height * factor), Image.NEAREST) if factor > 1 else image


def image_grid(images: torch.Tensor, cols: int | None = None, min_cell: int = MIN_CELL) -> Image.Image:
    """A grid of images (``diffusers.utils.make_image_grid``), each enlarged and framed; empty cells are black."""
    from diffusers.utils import make_image_grid

    cells = [ImageOps.expand(upscale(im, min_cell).convert("RGB"), border=BORDER, fill=(BORDER_GREY,) * 3)
             for im in to_pil_images(images)]
    if not cells:
        raise InputError("no images to put in a grid")
    cols = cols or math.ceil(math.sqrt(len(cells)))
    rows = math.ceil(len(cells) / cols)
    cells += [Image.new("RGB", cells[0].size)] * (rows * cols - len(cells))
    return make_image_grid(cells, rows=rows, cols=cols)


def save_grid(images: torch.Tensor, path, cols: int | None = None) -> Path:
    path = check_output_file(path)
    image_grid(images, cols).save(path)
    return path


def save_images(images: torch.Tensor, output_dir, prefix: str = "") -> list[Path]:
    """One PNG per image at its own resolution: ``00000.png``, ``00001.png``, ... (what metrics read back)."""
    folder = check_output_dir(output_dir)
    paths = []
    for i, im in enumerate(to_pil_images(images)):
        paths.append(folder / f"{prefix}{i:05d}.png")
        im.save(paths[-1])
    return paths


def _show(ax, image: torch.Tensor) -> None:
    """One (C, H, W) float image in [-1, 1] on a matplotlib axis, without ticks."""
    x = ((image.detach().float().cpu().clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()
    if x.shape[-1] == 1:
        ax.imshow(x[..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(x, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def _new_figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _save_figure(fig, path) -> Path:
    path = check_output_file(path)
    fig.savefig(path, dpi=fig.dpi, facecolor="white")
    return path


# ----------------------------------------------------------------------------------------------------------------
# 3. The reverse process: x_t and the predicted x_0 along the way (strip PNG + animated GIF)
# ----------------------------------------------------------------------------------------------------------------


def _t_label(t: float) -> str:
    return f"t={t:.0f}" if float(t).is_integer() or abs(t) >= 10 else f"t={t:.2f}"


def trajectory_figure(record: dict, frames: list[int] | None = None, num_frames: int = 8):
    """Rows: for each image, x_t (what the network sees) and its predicted x_0; columns: the chosen model calls,
    then the final sample. ``frames`` are positions in ``record`` (default: ``num_frames`` evenly spaced)."""
    frames = frames if frames is not None else evenly_spaced(len(record["timesteps"]), num_frames)
    n_images = record["x_t"].shape[1]
    cols = len(frames) + 1
    fig = _new_figure(1.25 * cols + 0.6, 1.35 * 2 * n_images + 0.7)
    axes = fig.subplots(2 * n_images, cols, squeeze=False)
    for c, f in enumerate(frames):
        call, t = record["call_indices"][f], record["timesteps"][f]
        axes[0, c].set_title(f"call {call + 1}/{record['num_model_calls']}\n{_t_label(t)}", fontsize=9)
        for n in range(n_images):
            _show(axes[2 * n, c], record["x_t"][f, n])
            _show(axes[2 * n + 1, c], record["x0"][f, n])
    for n in range(n_images):
        _show(axes[2 * n, cols - 1], record["images"][n])
        axes[2 * n + 1, cols - 1].axis("off")
        axes[2 * n, 0].set_ylabel("x_t", fontsize=10)
        axes[2 * n + 1, 0].set_ylabel("predicted x_0", fontsize=10)
    axes[0, cols - 1].set_title("output", fontsize=9)
    fig.suptitle(f"Reverse process: {record['scheduler']}, {record['num_inference_steps']} steps "
                 f"({record['num_model_calls']} model calls)", fontsize=11)
    return fig


def trajectory_frame(record: dict, f: int) -> Image.Image:
    """Frame ``f`` of a recorded reverse process (a position in ``record``): the x_t row above the predicted-x_0
    row, with the call and t written on top (one frame of the GIF, one position of the demo's slider)."""
    top = image_grid(record["x_t"][f], cols=record["x_t"].shape[1])
    bottom = image_grid(record["x0"][f], cols=record["x0"].shape[1])
    caption = (f"{record['scheduler']}  call {record['call_indices'][f] + 1}/{record['num_model_calls']}  "
               f"{_t_label(record['timesteps'][f])}\ntop: x_t    bottom: predicted x_0")
    header = 34
    frame = Image.new("RGB", (max(top.width, 240), header + top.height + bottom.height), "white")
    ImageDraw.Draw(frame).multiline_text((4, 3), caption, fill="black", spacing=4)
    frame.paste(top, (0, header))
    frame.paste(bottom, (0, header + top.height))
    return frame


def trajectory_gif(record: dict, path, max_frames: int = 60, frame_ms: int = 80, hold_ms: int = 1500) -> Path:
    """An animated GIF of the reverse process: each frame shows the x_t row above the predicted-x_0 row."""
    path = check_output_file(path, (".gif",))
    frames = [trajectory_frame(record, f).quantize(colors=255)
              for f in evenly_spaced(len(record["timesteps"]), max_frames)]
    durations = [frame_ms] * (len(frames) - 1) + [hold_ms]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=durations, loop=0)
    return path


# ----------------------------------------------------------------------------------------------------------------
# 4. The forward process and the noise schedules
# ----------------------------------------------------------------------------------------------------------------


def parse_timesteps(text: str, num_train_timesteps: int) -> list[int]:
    """``"0,50,100"`` -> ``[0, 50, 100]``, each in [0, T-1]."""
    try:
        values = [int(v) for v in str(text).replace(" ", "").split(",") if v != ""]
    except ValueError as e:
        raise InputError(f"--timesteps must be whole numbers separated by commas, e.g. 0,100,500,999; got {text!r}") \
            from e
    if not values:
        raise InputError("--timesteps is empty; give e.g. 0,100,250,500,999")
    bad = [v for v in values if not 0 <= v < num_train_timesteps]
    if bad:
        raise InputError(f"--timesteps {bad} are outside 0..{num_train_timesteps - 1} (the schedule has "
                         f"{num_train_timesteps} steps); use values in that range")
    return values


def forward_figure(images: torch.Tensor, timesteps: list[int], beta_schedule: str = "linear",
                   num_train_timesteps: int = 1000, seed: int = 0):
    """``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps`` of each image at each timestep (one eps per image, so the
    columns show the same noise taking over). Uses ``DDPMScheduler.add_noise``."""
    from diffusers import DDPMScheduler

    from sd_course.schedulers import schedule_curves

    schedule_curves(beta_schedule, num_train_timesteps)  # checks the names and counts
    scheduler = DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule)
    x0 = images.float() / 127.5 - 1 if images.dtype == torch.uint8 else images.float()
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    n, cols = x0.shape[0], len(timesteps)
    fig = _new_figure(1.3 * cols + 0.6, 1.4 * n + 1.0)
    axes = fig.subplots(n, cols, squeeze=False)
    for c, t in enumerate(timesteps):
        x_t = scheduler.add_noise(x0, eps, torch.full((n,), t, dtype=torch.long))
        abar = float(scheduler.alphas_cumprod[t])
        axes[0, c].set_title(f"t={t}\nᾱ={abar:.3g}", fontsize=9)
        for r in range(n):
            _show(axes[r, c], x_t[r])
    fig.suptitle(f"Forward process q(x_t | x_0) = N(√ᾱ_t x_0, (1-ᾱ_t) I), {beta_schedule}, T={num_train_timesteps}",
                 fontsize=10)
    return fig


def schedules_figure(schedules=("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid"),
                     num_train_timesteps: int = 1000):
    """alpha_bar_t, beta_t (log scale) and log-SNR_t of each beta schedule, on one figure."""
    from sd_course.schedulers import schedule_curves

    fig = _new_figure(13, 4.2)
    ax_abar, ax_beta, ax_snr = fig.subplots(1, 3)
    for name in schedules:
        c = schedule_curves(name, num_train_timesteps)
        label = name + (" (default betas; meant for latents)" if name == "scaled_linear" else "")
        ax_abar.plot(c["t"], c["alpha_bar"], label=label)
        ax_beta.plot(c["t"], c["beta"], label=label)
        ax_snr.plot(c["t"], c["log_snr"], label=label)
    ax_abar.set(title="ᾱ_t: signal variance left", xlabel="t", ylabel="ᾱ_t", ylim=(0, 1.02))
    ax_beta.set(title="β_t: noise added at step t", xlabel="t", ylabel="β_t (log scale)", yscale="log")
    ax_snr.set(title="log SNR_t = log(ᾱ_t / (1 - ᾱ_t))", xlabel="t", ylabel="log-SNR")
    ax_snr.axhline(0, color="grey", lw=0.8, ls=":")
    for ax in (ax_abar, ax_beta, ax_snr):
        ax.grid(alpha=0.3)
    fig.legend(*ax_abar.get_legend_handles_labels(), loc="outside lower center", ncols=len(schedules), fontsize=9)
    fig.suptitle(f"DDPMScheduler beta schedules, T = {num_train_timesteps}", fontsize=11)
    return fig


def loss_figure(records: list[dict], title: str = "training loss", window: int | None = None):
    """The per-step loss of a run (``logs/loss.jsonl`` records): raw steps faint, a running mean of ``window`` steps
    bold (default: 1/20 of the run, at most 100 steps), log scale; epochs marked on top when the run has several."""
    if not records:
        raise InputError("the loss log is empty: train at least one step first")
    steps = torch.tensor([float(r["step"]) for r in records])
    loss = torch.tensor([float(r["loss"]) for r in records])
    if window is None:
        window = min(100, len(records) // 20)
    window = max(1, min(window, len(records)))
    total = torch.cat([torch.zeros(1), loss.double().cumsum(0)])
    index = torch.arange(1, len(loss) + 1)
    start = (index - window).clamp(min=0)
    running = (total[index] - total[start]) / (index - start)  # step i: the mean of steps max(0, i-window+1) .. i
    fig = _new_figure(8, 4)
    ax = fig.subplots()
    ax.plot(steps, loss, lw=0.5, alpha=0.3, color="tab:blue", label="per step")
    ax.plot(steps, running, lw=1.8, color="tab:blue", label=f"mean of the last {window} steps")
    ax.set(xlabel="optimisation step", ylabel="MSE loss (log scale)", yscale="log", title=title)
    ax.grid(alpha=0.3, which="both")
    epochs = sorted({int(r["epoch"]) for r in records})
    if len(epochs) > 1:
        starts = [next(r["step"] for r in records if int(r["epoch"]) == e) for e in epochs]
        top = ax.secondary_xaxis("top")
        top.set_xticks(starts, [str(e + 1) for e in epochs])
        top.set_xlabel("epoch")
    ax.legend()
    return fig


def write_loss_plot(loss_jsonl, output="loss.png", title: str = "training loss") -> Path:
    """``logs/loss.jsonl`` of a training run -> a PNG of :func:`loss_figure`."""
    import json

    path = Path(loss_jsonl)
    if not path.is_file():
        raise InputError(f"no loss log at {path}: give the logs/loss.jsonl of a training run")
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return _save_figure(loss_figure(records, title), output)


# ----------------------------------------------------------------------------------------------------------------
# 5. What the sub-commands run (sd_course/cli.py only forwards its arguments here)
# ----------------------------------------------------------------------------------------------------------------


def check_sample_outputs(output=None, output_dir=None) -> tuple:
    """Where ``sd-course sample`` writes, checked before any model loads: a grid PNG (``output``, by default
    samples.png) and/or a folder of one PNG per image (``output_dir``). Returns (output, output_dir)."""
    if output is None and output_dir is None:
        output = "samples.png"
    if output is not None:
        check_output_file(output)
    if output_dir is not None:
        check_output_dir(output_dir)
    return output, output_dir


def write_sample_outputs(images: torch.Tensor, output=None, output_dir=None) -> dict:
    """Write what :func:`check_sample_outputs` accepted -> {"grid": path, "images": [paths]}."""
    written = {}
    if output is not None:
        written["grid"] = str(save_grid(images, output))
    if output_dir is not None:
        written["images"] = [str(p) for p in save_images(images, output_dir)]
    return written


def write_samples(model=None, scheduler=None, num_inference_steps=None, num_images=16, batch_size=64, seed=0,
                  eta=None, output=None, output_dir=None, show_progress=True) -> dict:
    """``sd-course sample``: a grid PNG (``output``) and/or one PNG per image (``output_dir``)."""
    from sd_course.pipeline import generate, load_pipeline

    output, output_dir = check_sample_outputs(output, output_dir)
    check_steps_value(num_inference_steps)  # a bad count fails now, not after loading the weights
    pipe = load_pipeline(model, scheduler)
    images = generate(pipe, num_images, batch_size=batch_size, num_inference_steps=num_inference_steps, seed=seed,
                      eta=eta, show_progress=show_progress)
    return write_sample_outputs(images, output, output_dir)


def write_trajectory(model=None, scheduler=None, num_inference_steps=None, num_images=4, seed=0, eta=None,
                     num_frames=8, steps=None, output_dir=".", name="trajectory", show_progress=True) -> dict:
    """``sd-course trajectory``: ``<output_dir>/<name>.png`` (strip) and ``<name>.gif`` (animation).

    ``steps``: model-call indices to show in the strip (``"0,10,49"``; negative counts from the end), else
    ``num_frames`` evenly spaced ones. The GIF shows every call (at most 60 frames).
    """
    from sd_course.pipeline import load_pipeline, record_trajectory

    folder = check_output_dir(output_dir)
    png, gif = check_output_file(folder / f"{name}.png"), check_output_file(folder / f"{name}.gif", (".gif",))
    if int(num_frames) < 1:
        raise InputError(f"--num_frames must be at least 1, got {num_frames}")
    check_steps_value(num_inference_steps)
    pipe = load_pipeline(model, scheduler)
    record = record_trajectory(pipe, num_images, num_inference_steps, seed, eta=eta, show_progress=show_progress)
    frames = None
    if steps is not None:
        calls = record["num_model_calls"]
        try:
            wanted = [int(s) for s in str(steps).split(",") if s.strip()]
        except ValueError as e:
            raise InputError(f"--steps must be model-call indices separated by commas, e.g. 0,10,49; got {steps!r}") \
                from e
        bad = [s for s in wanted if not -calls <= s < calls]
        if bad or not wanted:
            raise InputError(f"--steps {bad or steps!r} outside 0..{calls - 1} (this run makes {calls} model calls)")
        frames = sorted({s % calls for s in wanted})
    fig = trajectory_figure(record, frames, num_frames)
    return dict(png=str(_save_figure(fig, png)), gif=str(trajectory_gif(record, gif)))


def write_forward(output="forward.png", image=None, dataset_name=None, num_images=3,
                  timesteps="0,50,100,250,500,750,999", beta_schedule="linear", num_train_timesteps=1000,
                  resolution=None, seed=0) -> str:
    """``sd-course forward``: the forward noising of real images (a file, or the first images of a dataset)."""
    from sd_course.data import _open_image, channels_of, image_to_uint8, load_images

    output = check_output_file(output)
    steps = parse_timesteps(timesteps, int(num_train_timesteps))
    if int(num_images) < 1:
        raise InputError(f"--num_images must be at least 1, got {num_images}")
    if image is not None and dataset_name is not None:
        raise InputError("give either --image or --dataset_name, not both")
    if image is not None:
        if not Path(image).is_file():
            raise InputError(f"--image {image!r} is not a file; pass the path of a PNG/JPEG image")
        pil = _open_image({"path": str(image)}, 0)
        mode = "L" if channels_of(pil.mode) == 1 else "RGB"
        images = image_to_uint8(pil, int(resolution or min(pil.size)), mode)[None]
    else:
        images, _ = load_images(dataset_name or "builtin:mnist-2k:train", resolution, int(num_images),
                                show_progress=False)
    fig = forward_figure(images, steps, beta_schedule, int(num_train_timesteps), seed)
    return str(_save_figure(fig, output))


def write_schedules(output="schedules.png", schedules="linear,scaled_linear,squaredcos_cap_v2,sigmoid",
                    num_train_timesteps=1000) -> str:
    """``sd-course schedules``: alpha_bar_t, beta_t and log-SNR of the beta schedules on one figure."""
    output = check_output_file(output)
    names = [s.strip() for s in str(schedules).split(",") if s.strip()]
    if not names:
        raise InputError("--schedules is empty; give e.g. linear,squaredcos_cap_v2")
    fig = schedules_figure(names, int(num_train_timesteps))
    return str(_save_figure(fig, output))


def inpaint_figure(originals: torch.Tensor, masks: torch.Tensor, fills: list[torch.Tensor]):
    """Rows: one per image; columns: the original, the mask (white = filled), the input with the hole left black,
    then one fill per seed. ``fills``: a list (one per seed) of (N, C, H, W) uint8 tensors."""
    from sd_course.data import to_model_range

    originals = as_uint8(originals)
    masks = masks.expand(len(originals), -1, -1, -1) if masks.shape[0] == 1 else masks
    rows, cols = len(originals), 3 + len(fills)
    fig = _new_figure(1.1 * cols + 0.3, 1.1 * rows + 0.3)
    axes = fig.subplots(rows, cols, squeeze=False)
    for r in range(rows):
        holed = originals[r].clone()
        holed[:, masks[r, 0].bool()] = 0
        cells = [originals[r], (masks[r] * 255).to(torch.uint8).expand_as(originals[r]), holed]
        cells += [fill[r] for fill in fills]
        for c, cell in enumerate(cells):
            _show(axes[r][c], to_model_range(cell))
            if r == 0:
                axes[r][c].set_title(("original", "mask", "input")[c] if c < 3 else f"seed {c - 3}", fontsize=9)
    return fig


def write_inpainting(model=None, image=None, mask=None, output="inpainted.png", scheduler="ddpm",
                     num_inference_steps=None, num_images=1, seed=0, resample=1, figure=None,
                     show_progress=True) -> dict:
    """``sd-course inpaint``: fill the white part of ``mask`` in ``image``; ``output`` gets the filled image (a grid of
    ``num_images`` fills, seeds ``seed``, ``seed + 1``, ...), ``figure`` (optional) original | mask | input | fills."""
    from sd_course.pipeline import inpaint, load_inpaint_inputs, load_pipeline

    output = check_output_file(output)
    if figure is not None:
        figure = check_output_file(figure)
    if int(num_images) < 1:
        raise InputError(f"--num_images must be at least 1, got {num_images}")
    check_steps_value(num_inference_steps)
    pipe = load_pipeline(model, scheduler or "ddpm")
    pixels, mask_tensor = load_inpaint_inputs(pipe, image, mask)
    fills = [inpaint(pipe, pixels, mask_tensor, num_inference_steps, seed=seed + k, resample=resample,
                     show_progress=show_progress) for k in range(int(num_images))]
    if len(fills) == 1:
        to_pil_images(fills[0])[0].save(output)  # the image itself, at its own size: it can be inpainted again
    else:
        save_grid(torch.cat(fills), output, cols=len(fills))
    written = dict(output=str(output))
    if figure is not None:
        written["figure"] = str(_save_figure(inpaint_figure(pixels, mask_tensor, fills), figure))
    return written
