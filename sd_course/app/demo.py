"""The Gradio demo: sample, watch the denoising, noise a digit, inpaint, in a browser (CPU is enough).

    pip install -e ".[demo]"
    sd-course demo                                  # then open http://127.0.0.1:7860
    sd-course demo --model runs/quick --model pipelines/ddpm-mnist --port 7861
    sd-course demo --write_space space/             # a Hugging Face Space folder: app.py, requirements.txt, README.md

Tabs:

- **Sample**: a model (the shipped ``pipelines/ddpm-mnist`` and its epoch-10 and epoch-1 snapshots, the exact denoiser
  ``analytic:mnist``, and any ``--model``), a sampler among the 16 of ``sd_course.core.schedulers``, steps, seed and
  number of images; a text-to-image model (a ``StableDiffusionPipeline`` folder) also gets a prompt and a guidance
  scale. Same seed, same images as ``sd-course sample``.
- **Denoising**: x_t and the predicted x_0 at every model call of the reverse process (a slider and a GIF), as
  ``sd-course trajectory`` draws them.
- **Forward process**: a real digit and a slider over t: ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps``.
- **Inpaint**: hide part of a digit and let the model fill it in (RePaint, ``sd_course.pixel.inpaint.inpaint``).

Nothing is downloaded: the models are local folders (or Hub ids already in the cache), the page's fonts are the
browser's own, and Gradio's analytics are off. :func:`build_demo` returns the ``gr.Blocks``; :func:`write_space`
lays it out as a Space (``sdk: gradio``, ``app_file: app.py``) that runs as is.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import tempfile
import threading
import time
import warnings
from pathlib import Path

import torch
from diffusers import DDPMScheduler, StableDiffusionPipeline

import sd_course
from sd_course.core.data import load_images
from sd_course.core.device import resolve_device
from sd_course.core.errors import InputError, check_positive_int
from sd_course.core.images import image_grid
from sd_course.core.plots import evenly_spaced, trajectory_frame, trajectory_gif
from sd_course.core.schedulers import (
    SCHEDULERS,
    check_num_inference_steps,
    check_steps_value,
    make_scheduler,
    resolve_scheduler_name,
    schedule_curves,
)
from sd_course.core.shipped import find_shipped
from sd_course.kinds import kind_of
from sd_course.latent.guidance import DEFAULT_GUIDANCE, generate_from_prompts, recommended_guidance
from sd_course.latent.text import check_prompt
from sd_course.pixel.inpaint import inpaint
from sd_course.pixel.pipeline import UnconditionalImagePipeline, generate, load_pipeline, record_trajectory

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: no calls home

SHIPPED = ("pipelines/ddpm-mnist", "pipelines/mini-sd-mnist", "pipelines/ddpm-mnist-epoch10",
           "pipelines/ddpm-mnist-epoch1", "pipelines/mini-sd-mnist-epoch10")
ANALYTIC = "analytic:mnist"
# What one request may ask for, and how many run and wait at once: a class shares one machine.
MAX_IMAGES = 16
MAX_STEPS = 250
CONCURRENCY = 2  # requests computed at the same time (each uses the CPU's threads; more only queue inside torch)
MAX_QUEUE = 16  # requests waiting; one more is answered "the demo is busy" at once instead of hanging
logger = logging.getLogger("sd_course.demo")
DIGITS = "builtin:mnist-2k:train"
NUM_DIGITS = 100
DIGIT_LABEL = "Digit (its number among the MNIST digits shipped with sd_course)"
MASKS = ("lower half", "upper half", "left half", "right half", "centre square")


def _gradio():
    try:
        import gradio as gr
    except ImportError as e:
        raise InputError("the demo needs Gradio, which is not installed: pip install 'sd_course[demo]' "
                         "(or pip install gradio)") from e
    return gr


# ----------------------------------------------------------------------------------------------------------------
# 1. The models on offer, loaded once each
# ----------------------------------------------------------------------------------------------------------------


def default_models() -> list[str]:
    """The shipped pipelines that are present (checkout or installed wheel), then the exact denoiser."""
    found = [str(p) for p in (find_shipped(name) for name in SHIPPED) if p is not None and
             (p / "model_index.json").is_file()]
    return found + [ANALYTIC]


def models_on_offer(extra: list[str] | None = None, shipped: bool = True) -> list[str]:
    """``sd-course demo --model X``: the shipped models, then each ``--model`` (added, not instead), once each."""
    models = default_models() if shipped else []
    resolved = {str(Path(m).resolve()) for m in models if not m.startswith("analytic:")}
    for model in extra or []:
        key = str(Path(model).resolve()) if not str(model).startswith("analytic:") else str(model)
        if str(model) not in models and key not in resolved:
            models.append(str(model))
            resolved.add(key)
    if not models:
        raise InputError("no model to offer: pass --model DIR (a pipeline folder), or drop --no_shipped")
    return models


def demo_tab(model: str) -> str | None:
    """Which Sample tab controls a model gets (its kind's ``demo``: "pixel" or "text"); None when its kind is not
    offered in the demo, or when it cannot be read now (a Hub id not in the cache, offline)."""
    try:
        return kind_of(model).demo
    except InputError:
        return None


class ModelStore:
    """Labels -> model paths; each pipeline is loaded on first use and kept; a scheduler swap shares its modules."""

    def __init__(self, models: list[str] | None = None, device: str | None = "auto"):
        models = [str(m) for m in (models or default_models())]
        if not models:
            raise InputError("no model to show: pass --model DIR (a pipeline folder)")
        self.paths: dict[str, str] = {}
        for model in models:
            label = "analytic:mnist (exact denoiser)" if model == ANALYTIC else Path(model).name or model
            while label in self.paths:
                label += "'"
            self.paths[label] = model
        self.kinds = {label: demo_tab(path) or "pixel" for label, path in self.paths.items()}
        self.device = resolve_device(device)
        self._loaded: dict[str, object] = {}
        self._lock = threading.Lock()

    @property
    def labels(self) -> list[str]:
        return list(self.paths)

    def pixel_labels(self) -> list[str]:
        return [label for label in self.paths if self.kinds[label] == "pixel"]

    def is_text(self, label: str) -> bool:
        return self.kinds.get(label) == "text"

    def guidance(self, label: str) -> float:
        """The guidance scale the Sample tab starts at for this model: the one its card recommends, else 2."""
        return recommended_guidance(self.paths[label]) if self.is_text(label) else DEFAULT_GUIDANCE

    def _base(self, label: str):
        if label not in self.paths:
            raise InputError(f"unknown model {label!r}; choose one of {self.labels}")
        with self._lock:
            if label not in self._loaded:
                path = self.paths[label]
                if self.is_text(label):
                    self._loaded[label] = _load_text_pipeline(StableDiffusionPipeline, path).to(self.device)
                else:
                    self._loaded[label] = load_pipeline(path, device=str(self.device))
            return self._loaded[label]

    def pipeline(self, label: str, scheduler: str | None):
        """The model with ``scheduler`` (alias or class name; None: the folder's own)."""
        base = self._base(label)
        if scheduler is None:
            return base
        new = make_scheduler(scheduler, base.scheduler.config)
        if self.is_text(label):
            return type(base)(**{**base.components, "scheduler": new}, requires_safety_checker=False)
        return UnconditionalImagePipeline(unet=base.unet, scheduler=new)


def _load_text_pipeline(cls, path: str):
    try:
        return cls.from_pretrained(path, safety_checker=None, requires_safety_checker=False)
    except Exception as e:
        raise InputError(f"could not load the text-to-image pipeline {path!r}: {type(e).__name__}: "
                         f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}") from e


# ----------------------------------------------------------------------------------------------------------------
# 2. What the buttons do (plain functions: testable without a browser)
# ----------------------------------------------------------------------------------------------------------------


def sample(store: ModelStore, label: str, scheduler: str, steps, seed, num_images, prompt: str = "",
           guidance_scale: float | None = None):
    """-> (grid PIL image, one-line description). InputError for anything the user can fix. ``guidance_scale``:
    default, the one the model's card recommends."""
    resolve_scheduler_name(scheduler)
    check_request(steps, num_images)
    num_images = check_positive_int(int(num_images), "num_images")
    seed = int(seed)
    text = store.is_text(label)
    if text and not str(prompt or "").strip():
        raise InputError("type a prompt: this is a text-to-image model, it draws what the prompt says "
                         "(e.g. 'a handwritten digit three')")
    start = time.perf_counter()
    pipe = store.pipeline(label, scheduler)
    steps = check_num_inference_steps(pipe.scheduler, int(steps))
    notes = []
    if text:
        guidance_scale = float(guidance_scale) if guidance_scale is not None else store.guidance(label)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            notes = check_prompt(pipe.tokenizer, prompt.strip())  # words it never saw, a prompt cut short
        images = generate_from_prompts(pipe, [prompt.strip()], num_images_per_prompt=num_images,
                                       num_inference_steps=steps, guidance_scale=float(guidance_scale), seed=seed,
                                       batch_size=MAX_IMAGES, show_progress=True)
    else:
        images = generate(pipe, num_images, batch_size=MAX_IMAGES, num_inference_steps=steps, seed=seed)
    grid = image_grid(images)
    what = f"prompt {prompt.strip()!r}, guidance {float(guidance_scale):g}, " if text else ""
    return grid, (f"{num_images} image(s) from {label}: {what}{type(pipe.scheduler).__name__}, {steps} steps, seed "
                  f"{seed}, {time.perf_counter() - start:.1f} s" + "".join(f". Note: {n}" for n in notes))


def check_request(steps, num_images=1) -> None:
    """The per-request cap: a shared demo answers everyone, so one request may not take the machine for minutes."""
    check_steps_value(steps)
    if int(num_images) > MAX_IMAGES:
        raise InputError(f"at most {MAX_IMAGES} images at a time in the demo (use `sd-course sample` for more)")
    if steps is not None and int(steps) > MAX_STEPS:
        raise InputError(f"at most {MAX_STEPS} steps in the demo (use `sd-course sample` for more; 25 are usual)")


def denoise(store: ModelStore, label: str, scheduler: str, steps, seed, num_images, gif_dir: str | Path):
    """-> (frames, GIF path, description): the reverse process, one frame per recorded model call (at most 60)."""
    check_request(steps, num_images)
    if store.is_text(label):
        raise InputError("the denoising view shows pixel-space models; choose a DDPM model")
    pipe = store.pipeline(label, scheduler)
    record = record_trajectory(pipe, int(num_images), int(steps), int(seed))
    frames = [trajectory_frame(record, f) for f in evenly_spaced(len(record["timesteps"]), 60)]
    gif = trajectory_gif(record, Path(gif_dir) / f"trajectory-{time.time_ns()}.gif")
    return frames, str(gif), (f"{record['scheduler']}, {record['num_inference_steps']} steps = "
                              f"{record['num_model_calls']} model calls; move the slider to walk through them")


_DIGITS: dict[int, torch.Tensor] = {}


def digits(resolution: int = 28) -> torch.Tensor:
    """The first 100 digits shipped with the package (uint8 (N, 1, R, R)), cached per resolution."""
    if resolution not in _DIGITS:
        _DIGITS[resolution] = load_images(DIGITS, resolution, NUM_DIGITS, show_progress=False)[0]
    return _DIGITS[resolution]


def forward(index, t, beta_schedule: str = "linear", seed=0):
    """-> (image of x_0 beside x_t, description) for digit ``index`` at timestep ``t`` (T = 1000)."""
    schedule_curves(beta_schedule, 1000)  # checks the name
    t = int(t)
    if not 0 <= t < 1000:
        raise InputError(f"t must be in 0..999, got {t}")
    x0 = digits()[int(index)][None].float() / 127.5 - 1
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(int(seed)))
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule=beta_schedule)
    x_t = scheduler.add_noise(x0, eps, torch.tensor([t]))
    abar = float(scheduler.alphas_cumprod[t])
    grid = image_grid(torch.cat([x0, x_t, eps.clamp(-1, 1)]), cols=3, min_cell=168)
    return grid, (f"left: x_0, middle: x_t at t = {t}, right: the noise eps. x_t = {abar ** 0.5:.3f} x_0 + "
                  f"{(1 - abar) ** 0.5:.3f} eps (abar_t = {abar:.4f}, {beta_schedule} schedule, "
                  f"SNR = {abar / max(1 - abar, 1e-12):.3g})")


def mask_of(name: str, size: int) -> torch.Tensor:
    """A (1, 1, size, size) {0, 1} mask: 1 = the part the model fills."""
    mask = torch.zeros(1, 1, size, size)
    h = size // 2
    region = {"lower half": (slice(h, None), slice(None)), "upper half": (slice(None, h), slice(None)),
              "left half": (slice(None), slice(None, h)), "right half": (slice(None), slice(h, None)),
              "centre square": (slice(size // 4, size - size // 4), slice(size // 4, size - size // 4))}
    if name not in region:
        raise InputError(f"unknown mask {name!r}; choose one of {list(region)}")
    mask[0, 0][region[name]] = 1
    return mask


def inpaint_digit(store: ModelStore, label: str, index, mask_name: str, scheduler: str, steps, seed):
    """-> (original | hidden part in grey | filled, description)."""
    check_request(steps)
    if store.is_text(label):
        raise InputError("inpainting here works with pixel-space models; choose a DDPM model")
    pipe = store.pipeline(label, scheduler)
    size, channels = pipe.unet.config.sample_size, pipe.unet.config.in_channels
    image = digits(int(size))[int(index)][None]
    if channels != 1:
        image = image.expand(-1, channels, -1, -1).contiguous()
    mask = mask_of(mask_name, int(size))
    start = time.perf_counter()
    filled = inpaint(pipe, image, mask, num_inference_steps=int(steps), seed=int(seed))
    hidden = image.clone()
    hidden[mask.bool().expand_as(hidden)] = 128
    return image_grid(torch.cat([image, hidden, filled]), cols=3, min_cell=168), (
        f"left: the digit, middle: the part hidden from the model, right: the model's fill "
        f"({type(pipe.scheduler).__name__}, {int(steps)} steps, {time.perf_counter() - start:.1f} s)")


# ----------------------------------------------------------------------------------------------------------------
# 3. The page
# ----------------------------------------------------------------------------------------------------------------


def _scheduler_choices() -> list[tuple[str, str]]:
    return [(f"{info.alias} ({info.class_name})", info.alias) for info in SCHEDULERS]


def build_demo(models: list[str] | None = None, concurrency: int = CONCURRENCY, max_queue: int = MAX_QUEUE,
               device: str | None = "auto"):
    """The ``gr.Blocks`` of the demo, for ``models`` (pipeline folders, Hub ids in the cache, ``analytic:NAME``;
    default: the shipped ones). ``build_demo().launch()`` starts it."""
    gr = _gradio()

    def Slider(*args, **kwargs):
        """gr.Slider whose out-of-range refusal is one line in the server's log, not a traceback (Gradio prints one
        for every refusal of its own validation); the page shows the same message. (Wrapped, not subclassed: a
        subclass of a Gradio component makes Gradio write a .pyi stub beside this file.)"""
        slider = gr.Slider(*args, **kwargs)
        check = slider.preprocess

        def preprocess(payload):
            try:
                return check(payload)
            except gr.Error as e:
                logger.info(f"refused a request: {e.message}")
                raise gr.Error(e.message, print_exception=False) from None

        slider.preprocess = preprocess
        return slider

    store = ModelStore(models, device)
    gif_dir = Path(tempfile.mkdtemp(prefix="sd_course_demo_"))
    schedulers = _scheduler_choices()
    first = store.labels[0]
    pixel = store.pixel_labels() or store.labels

    def user_error(fn):  # an InputError becomes a message box on the page (functools.wraps keeps the signature,
        @functools.wraps(fn)  # whose gr.Progress default makes Gradio show the progress bar)
        def wrapped(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except InputError as e:
                logger.info(f"refused a request: {e}")  # one line in the server's log, no traceback
                raise gr.Error(str(e), duration=None, print_exception=False) from e  # stays until closed

        return wrapped

    @user_error
    def on_sample(label, scheduler, steps, seed, num_images, prompt, guidance, progress=gr.Progress(track_tqdm=True)):
        return sample(store, label, scheduler, steps, seed, num_images, prompt, guidance)

    def on_model(label):  # the prompt and guidance only for a text model, at the guidance its card recommends
        visible = store.is_text(label)
        return gr.update(visible=visible), gr.update(visible=visible, value=store.guidance(label))

    @user_error
    def on_denoise(label, scheduler, steps, seed, num_images, progress=gr.Progress(track_tqdm=True)):
        frames, gif, text = denoise(store, label, scheduler, steps, seed, num_images, gif_dir)
        return frames, gr.update(maximum=len(frames) - 1, value=len(frames) - 1, interactive=True), frames[-1], \
            gif, text

    def on_frame(frames, position):
        return frames[int(position)] if frames else None

    @user_error
    def on_forward(index, t, schedule, seed):
        return forward(index, t, schedule, seed)

    @user_error
    def on_inpaint(label, index, mask_name, scheduler, steps, seed, progress=gr.Progress(track_tqdm=True)):
        return inpaint_digit(store, label, index, mask_name, scheduler, steps, seed)

    with gr.Blocks(title="sd_course demo", analytics_enabled=False) as demo:
        gr.Markdown("# sd_course: diffusion models, step by step\nModels trained with `sd-course train`; sampling "
                    "correct with all 15 diffusers schedulers. Runs on the CPU.")
        with gr.Tab("Sample"):
            with gr.Row():
                with gr.Column(scale=1):
                    model = gr.Dropdown(store.labels, value=first, label="Model", elem_id="sample-model")
                    scheduler = gr.Dropdown(schedulers, value="dpm++", label="Scheduler", elem_id="sample-scheduler")
                    steps = Slider(1, MAX_STEPS, value=25, step=1, label="Steps", elem_id="sample-steps")
                    seed = gr.Number(0, precision=0, label="Seed", elem_id="sample-seed")
                    num_images = Slider(1, MAX_IMAGES, value=8, step=1, label="Number of images",
                                           elem_id="sample-num-images")
                    prompt = gr.Textbox("", label="Prompt", placeholder="a handwritten digit three",
                                        elem_id="sample-prompt", visible=store.is_text(first))
                    guidance = Slider(1, 15, value=store.guidance(first), step=0.25, label="Guidance scale",
                                         elem_id="sample-guidance", visible=store.is_text(first))
                    generate_button = gr.Button("Generate", variant="primary", elem_id="sample-generate")
                with gr.Column(scale=2):
                    grid = gr.Image(label="Samples", type="pil", format="png", interactive=False,
                                    elem_id="sample-grid")
                    info = gr.Markdown(elem_id="sample-info")
            model.change(on_model, model, [prompt, guidance])
            generate_button.click(on_sample, [model, scheduler, steps, seed, num_images, prompt, guidance],
                                  [grid, info])
        with gr.Tab("Denoising"):
            with gr.Row():
                with gr.Column(scale=1):
                    d_model = gr.Dropdown(pixel, value=pixel[0], label="Model", elem_id="denoise-model")
                    d_scheduler = gr.Dropdown(schedulers, value="ddim", label="Scheduler", elem_id="denoise-scheduler")
                    d_steps = Slider(1, MAX_STEPS, value=25, step=1, label="Steps")
                    d_seed = gr.Number(0, precision=0, label="Seed")
                    d_num = Slider(1, 8, value=4, step=1, label="Number of images")
                    d_button = gr.Button("Run the reverse process", variant="primary", elem_id="denoise-run")
                with gr.Column(scale=2):
                    frames = gr.State([])
                    position = Slider(0, 1, value=0, step=1, label="Model call", interactive=False,
                                         elem_id="denoise-position")
                    frame = gr.Image(label="top: x_t, bottom: predicted x_0", type="pil", format="png",
                                     interactive=False, elem_id="denoise-frame")
                    gif = gr.Image(label="The whole reverse process (GIF)", type="filepath", format="gif",
                                   interactive=False, elem_id="denoise-gif")
                    d_info = gr.Markdown()
            d_button.click(on_denoise, [d_model, d_scheduler, d_steps, d_seed, d_num],
                           [frames, position, frame, gif, d_info])
            position.change(on_frame, [frames, position], frame)
        with gr.Tab("Forward process"):
            with gr.Row():
                with gr.Column(scale=1):
                    f_index = Slider(0, NUM_DIGITS - 1, value=0, step=1, label=DIGIT_LABEL)
                    f_t = Slider(0, 999, value=250, step=1, label="t", elem_id="forward-t")
                    f_schedule = gr.Dropdown(["linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid"],
                                             value="linear", label="Beta schedule")
                    f_seed = gr.Number(0, precision=0, label="Seed of the noise")
                with gr.Column(scale=2):
                    f_image = gr.Image(label="q(x_t | x_0)", type="pil", format="png", interactive=False,
                                       elem_id="forward-image")
                    f_info = gr.Markdown()
            for control in (f_index, f_t, f_schedule, f_seed):
                control.change(on_forward, [f_index, f_t, f_schedule, f_seed], [f_image, f_info])
            demo.load(on_forward, [f_index, f_t, f_schedule, f_seed], [f_image, f_info])
        with gr.Tab("Inpaint"):
            with gr.Row():
                with gr.Column(scale=1):
                    i_model = gr.Dropdown(pixel, value=pixel[0], label="Model")
                    i_index = Slider(0, NUM_DIGITS - 1, value=0, step=1, label=DIGIT_LABEL)
                    i_mask = gr.Dropdown(list(MASKS), value=MASKS[0], label="Hide")
                    i_scheduler = gr.Dropdown([("ddpm (DDPMScheduler)", "ddpm"), ("ddim (DDIMScheduler)", "ddim")],
                                              value="ddpm", label="Scheduler (stateless ones only)")
                    i_steps = Slider(10, MAX_STEPS, value=50, step=10, label="Steps")
                    i_seed = gr.Number(0, precision=0, label="Seed")
                    i_button = gr.Button("Fill in", variant="primary", elem_id="inpaint-run")
                with gr.Column(scale=2):
                    i_image = gr.Image(label="Inpainting", type="pil", format="png", interactive=False)
                    i_info = gr.Markdown()
            i_button.click(on_inpaint, [i_model, i_index, i_mask, i_scheduler, i_steps, i_seed], [i_image, i_info])
    # A bounded queue: CONCURRENCY jobs at a time, MAX_QUEUE waiting; Gradio answers a request beyond that at once
    # with "the queue is full", which the page shows as an error to try again (benchmarks/demo_load.py measures it).
    demo.queue(default_concurrency_limit=concurrency, max_size=max_queue)
    return demo


def _theme():
    gr = _gradio()
    # The browser's own fonts: the default theme would fetch Google Fonts, which an offline machine cannot.
    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                             font_mono=["ui-monospace", "Consolas", "monospace"])


def launch(models: list[str] | None = None, host: str = "127.0.0.1", port: int = 7860,
           concurrency: int = CONCURRENCY, max_queue: int = MAX_QUEUE, device: str | None = "auto"):
    """``sd-course demo``: build the page and serve it until Ctrl+C."""
    check_positive_int(concurrency, "concurrency")
    check_positive_int(max_queue, "max_queue")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    demo = build_demo(models, concurrency, max_queue, device)
    print(f"sd-course demo: open http://{host}:{port} in your browser (Ctrl+C stops it)", flush=True)
    try:
        demo.launch(server_name=host, server_port=int(port), share=False, inbrowser=False, show_error=True,
                    quiet=True, theme=_theme(), footer_links=["gradio"])
    except OSError as e:
        raise InputError(f"cannot listen on {host}:{port} ({e}); pass another --port, e.g. --port 7861") from e


# ----------------------------------------------------------------------------------------------------------------
# 4. As a Hugging Face Space
# ----------------------------------------------------------------------------------------------------------------

SPACE_APP = '''"""sd_course's demo as a Hugging Face Space (written by `sd-course demo --write_space`).

Run it here with `python app.py` (http://127.0.0.1:7860), or upload this folder as a Gradio Space:
    hf upload YOUR_NAME/sd-course-demo . --repo-type space
"""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from sd_course.app.demo import _theme, build_demo  # noqa: E402  (the copy of the package beside this file)

demo = build_demo(models={models!r})

if __name__ == "__main__":
    demo.launch(theme=_theme())  # a Space sets GRADIO_SERVER_NAME / GRADIO_SERVER_PORT itself
'''

SPACE_README = """---
title: sd_course demo
emoji: 🌀
colorFrom: indigo
colorTo: gray
sdk: gradio
sdk_version: {gradio_version}
app_file: app.py
pinned: false
license: apache-2.0
short_description: Sample, denoise, noise and inpaint MNIST digits with diffusers
---

# sd_course demo

The demo of the course *Introduction to Stable Diffusion Models* (`sd-course demo`): a DDPM trained with
diffusers on MNIST, sampled with any of the 15 compatible schedulers; the reverse process step by step; the forward
process on a real digit; inpainting. It runs on the free CPU hardware.

Models: {model_list}.
"""


def _requirements() -> list[str]:
    """sd_course's own requirements (setup.cfg install_requires) plus gradio."""
    gradio_version = _gradio().__version__
    try:
        from importlib.metadata import requires

        reqs = [r.split(";")[0].strip() for r in (requires("sd_course") or []) if "extra ==" not in r]
    except Exception:
        reqs = []
    reqs = reqs or ["torch>=2.1", "diffusers>=0.30", "accelerate>=0.30", "datasets>=2.19", "transformers>=4.40",
                    "safetensors>=0.4", "pillow>=9.0", "huggingface_hub>=0.23", "pyyaml>=6.0", "tqdm>=4.60",
                    "matplotlib>=3.7"]
    return [r for r in reqs if not r.lower().startswith("gradio")] + [f"gradio=={gradio_version}"]


def write_space(folder: str | Path, models: list[str] | None = None) -> Path:
    """A Space folder: ``app.py``, ``requirements.txt``, ``README.md`` (Space metadata), a copy of the ``sd_course``
    package and of the models (local folders under ``models/``; Hub ids and ``analytic:`` are kept as names).
    Refuses a folder that exists and is not empty."""
    folder = Path(folder).expanduser()
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise InputError(f"--write_space {str(folder)!r} exists and is not an empty folder; give a new folder")
    models = [str(m) for m in (models or default_models())]
    for model in models:
        if not model.startswith("analytic:") and (Path(model).exists() or model.startswith((".", "/", "~"))):
            if not (Path(model).expanduser() / "model_index.json").is_file():
                raise InputError(f"--model {model!r} is not a pipeline folder (no model_index.json)")
    staging = folder.parent / f".{folder.name}.space-new"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        shutil.copytree(Path(sd_course.__file__).parent, staging / "sd_course",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        in_space = []
        for model in models:
            path = Path(model).expanduser()
            if not model.startswith("analytic:") and (path / "model_index.json").is_file():
                name = path.resolve().name
                shutil.copytree(path, staging / "models" / name,
                                ignore=shutil.ignore_patterns("checkpoint-*", "epoch-*", "logs", ".*"))
                in_space.append(f"models/{name}")
            else:
                in_space.append(model)
        (staging / "app.py").write_text(SPACE_APP.format(models=in_space))
        (staging / "requirements.txt").write_text("\n".join(_requirements()) + "\n")
        (staging / "README.md").write_text(SPACE_README.format(
            gradio_version=_gradio().__version__, model_list=", ".join(f"`{m}`" for m in in_space)))
        (staging / ".gitattributes").write_text("*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
                                                "*.png filter=lfs diff=lfs merge=lfs -text\n")
        if folder.exists():
            folder.rmdir()
        os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder
