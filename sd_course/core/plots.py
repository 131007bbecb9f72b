"""Figures drawn from numbers already computed: the reverse process step by step, the forward process, the noise
schedules, a loss curve, an inpainting panel. Nothing here loads a model or samples (that is the caller's work:
``sd_course/app/figures.py`` for the commands, ``sd_course/app/demo.py`` for the browser).

Figures with axes and titles use matplotlib's object API (no pyplot, so nothing depends on a display or a global
backend). Images come in as uint8 tensors (N, C, H, W) or as floats in the model range [-1, 1].
(The course's questions on noise schedules are answered in ``sd_course/core/schedulers.py``; on the forward and
reverse process in ``sd_course/pixel/analytic.py`` and ``sd_course/pixel/pipeline.py``; all are collected in
``docs/sampling.md``.)
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import DDPMScheduler
from matplotlib.figure import Figure
from PIL import Image, ImageDraw

from sd_course.core.data import to_model_range
from sd_course.core.errors import InputError
from sd_course.core.images import as_uint8, check_output_file, image_grid
from sd_course.core.schedulers import schedule_curves


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
    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _save_figure(fig, path) -> Path:
    path = check_output_file(path)
    fig.savefig(path, dpi=fig.dpi, facecolor="white")
    return path


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
    path = Path(loss_jsonl)
    if not path.is_file():
        raise InputError(f"no loss log at {path}: give the logs/loss.jsonl of a training run")
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return _save_figure(loss_figure(records, title), output)


def inpaint_figure(originals: torch.Tensor, masks: torch.Tensor, fills: list[torch.Tensor]):
    """Rows: one per image; columns: the original, the mask (white = filled), the input with the hole left black,
    then one fill per seed. ``fills``: a list (one per seed) of (N, C, H, W) uint8 tensors."""
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


def evenly_spaced(count: int, num: int) -> list[int]:
    """``num`` evenly spaced indices of ``range(count)``, first and last included (all of them if num >= count)."""
    if num >= count:
        return list(range(count))
    if num == 1:
        return [count - 1]
    return sorted({round(k * (count - 1) / (num - 1)) for k in range(num)})
