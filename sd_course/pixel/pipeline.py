"""Sampling: a pipeline that is right with every scheduler diffusers offers for a DDPM model.

    sd-course sample --model runs/mnist --scheduler dpm++ --num_inference_steps 25 --num_images 64 --output grid.png

    from sd_course.pixel.pipeline import load_pipeline, generate
    pipe = load_pipeline("runs/mnist", scheduler="euler")          # any folder saved by DDPMPipeline.save_pretrained
    images = generate(pipe, num_images=1000, batch_size=250, seed=0)  # uint8 (N, C, H, W)

Training saves a standard ``DDPMPipeline`` folder (model_index.json + unet/ + scheduler/), which loads anywhere with
``DiffusionPipeline.from_pretrained``. :class:`UnconditionalImagePipeline` loads the very same folder and runs the
sampling loop the way diffusers' Stable Diffusion pipelines do, so that *every* scheduler of
``DDPMScheduler.compatibles`` is right (measured with the exact denoiser of ``sd_course.pixel.analytic`` in
``tests/pixel/test_pipeline.py``). Diffusers' own ``DDPMPipeline`` is only right with DDPM, DDIM and the two DPM-Solvers.

Q: What does one step of the reverse process do?
A: Given x_t, the network makes one prediction, from which the scheduler reads an estimate of the clean image and of
   the noise (the algebra of the forward process, exact for any prediction). The shipped model predicts v
   (``prediction_type: v_prediction``):
       ``x0_hat = sqrt(abar_t) x_t - sqrt(1 - abar_t) v_theta``,
       ``eps_hat = sqrt(abar_t) v_theta + sqrt(1 - abar_t) x_t``;
   an eps model gives ``x0_hat = (x_t - sqrt(1 - abar_t) eps_theta) / sqrt(abar_t)`` and ``eps_hat = eps_theta``.
   Its config also says ``clip_sample: true``, so DDPMScheduler, DDIMScheduler and HeunDiscreteScheduler clamp
   x0_hat to [-1, 1] (the image range) before using it; the other samplers have no such option and ignore the key.
   The scheduler then moves x_t to the next, lower noise level t'. DDPM (Algorithm 2 of Ho et al. 2020) draws
   x_{t'} from the Gaussian posterior q(x_{t'} | x_t, x_0 = x0_hat), with ``alpha = abar_t / abar_t'`` and
   ``beta = 1 - alpha`` for the jump:
       mean ``sqrt(abar_t') beta / (1 - abar_t) x0_hat + sqrt(alpha) (1 - abar_t') / (1 - abar_t) x_t``,
       plus fresh noise of variance ``beta~ = (1 - abar_t') / (1 - abar_t) beta`` (``variance_type: fixed_small``);
   for t' = t - 1, an eps model and an unclamped x0_hat that mean is
   ``1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - abar_t) eps_theta)``. DDIM keeps the same x0_hat but re-noises it
   deterministically, ``x_{t'} = sqrt(abar_t') x0_hat + sqrt(1 - abar_t') eps_hat`` (the clamped x0_hat, the
   unclamped eps_hat), which allows big jumps. ``sd-course trajectory`` draws x_t and x0_hat side by side.
Cmd: sd-course trajectory --model pipelines/ddpm-mnist --scheduler ddim --num_images 4 --output_dir figures/ --name pretrained
Fig: figures/pretrained.png

Q: Why is diffusers' DDPMPipeline wrong with Euler, Heun, LMS, ... and what does this pipeline do differently?
A: DDPMPipeline is written for DDPM/DDIM only: it (1) starts from N(0, I) noise, (2) feeds x_t to the network as is,
   and (3) passes ``generator=`` to every ``scheduler.step``. The "sigma" schedulers (Euler, Heun, LMS, KDPM2, EDM)
   work with ``x_ve = x_t / sqrt(abar_t)``: they need the start noise scaled by ``scheduler.init_noise_sigma`` (157
   for the linear schedule, 20,291 for the shipped cosine model) and the network input mapped back by
   ``scheduler.scale_model_input``; without both, the network sees inputs it was never trained on and the samples are
   wrong (blank or washed out). UniPC, PNDM, LMS, DEIS, Heun and KDPM2 have no ``generator`` argument, so DDPMPipeline
   raises TypeError. Here the loop follows diffusers' StableDiffusionPipeline: scale the initial noise, call
   ``scale_model_input`` before every model call, pass only the keyword arguments ``step()`` accepts, and call the
   network once per entry of ``scheduler.timesteps`` (second-order schedulers such as Heun list each step twice:
   predictor and corrector). EDMEulerScheduler expects an EDM-parametrised network; the loop converts the DDPM network
   to that form (see ``_edm_model_call``).
Cmd: python -m pytest tests/pixel/test_pipeline.py -q -k stock

Q: How does iterative noise removal help?
A: A one-shot denoiser can only return E[x_0 | x_t], the average of every image consistent with x_t: Part 1's
   lesson (an MSE-trained inverse of a many-to-one map learns the mean of the preimages: 1.2e-3 from E[x | y],
   1.0 from arcsin). From pure noise that average is a grey blur: with the exact denoiser of 16 digits
   (analytic:mnist) the predicted x_0 at t = 980 and 840 is all 16 digits superimposed. Many small steps turn the
   average into a sample: each step moves x_t only a little towards the current x0_hat and adds fresh noise (DDPM)
   or re-noises x0_hat (DDIM), so the next prediction starts from a less ambiguous x_t; by t = 560 the chain has
   committed to one digit, and the last steps only sharpen strokes (docs/sampling.md). Each step is nearly
   one-to-one, the case a regression handles well. Measured on the shipped 75-epoch model (fid_vs_steps.py, DDIM,
   100 samples; the real-data floor at n = 100 is
   [42.1](benchmarks/results/metric_floor.json#rows.n=100.fid)): 1 call FID [1021](benchmarks/results/fid_vs_steps.json#rows.sampler=ddim&model_calls=1.fid) (one blur for every
   noise: precision [1.0](benchmarks/results/fid_vs_steps.json#rows.sampler=ddim&model_calls=1.precision), recall [0.0](benchmarks/results/fid_vs_steps.json#rows.sampler=ddim&model_calls=1.recall)), 2 calls [377](benchmarks/results/fid_vs_steps.json#rows.sampler=ddim&model_calls=2.fid), 5 calls
   [118](benchmarks/results/fid_vs_steps.json#rows.sampler=ddim&model_calls=5.fid) (legible digits, recall [0.96](benchmarks/results/fid_vs_steps.json#rows.sampler=ddim&model_calls=5.recall)), 10 calls [84](benchmarks/results/fid_vs_steps.json#rows.sampler=ddim&model_calls=10.fid), 50 calls
   [70](benchmarks/results/fid_vs_steps.json#rows.sampler=ddim&model_calls=50.fid), 100 calls [67](benchmarks/results/fid_vs_steps.json#rows.sampler=ddim&model_calls=100.fid); 1000 calls [92.5](benchmarks/results/fid_vs_steps.json#rows.sampler=ddim&model_calls=1000.fid), worse, because visiting every
   low noise level leaves the model's small errors as stray pixels. The price is one network call per step (DDIM
   50 steps [5.0](benchmarks/results/fid_vs_steps.json#rows.sampler=ddim&model_calls=50.images_per_s) images/s, 1000 steps [0.18](benchmarks/results/fid_vs_steps.json#rows.sampler=ddim&model_calls=1000.images_per_s) on 2 CPU cores), and
   higher-order solvers of the same ODE buy most of the steps back. Steps also make the process steerable: inpainting constrains every
   step (see ``inpaint``).
Cmd: sd-course trajectory --model analytic:mnist --scheduler ddim --num_images 3 --output_dir figures/
Cmd: sd-course trajectory --model pipelines/ddpm-mnist --scheduler ddim --num_images 4 --output_dir figures/ --name pretrained
Cmd: python benchmarks/fid_vs_steps.py --samplers ddim --reference ../shared/data/mnist:test --num_samples 100 --output docs/figures/fid_vs_steps.png
Fig: figures/trajectory.png
Fig: docs/figures/fid_vs_steps.png
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from diffusers import DDPMScheduler, DiffusionPipeline, ImagePipelineOutput
from diffusers.image_processor import VaeImageProcessor
from diffusers.utils.torch_utils import randn_tensor
from tqdm.auto import tqdm

from sd_course.core.data import to_uint8
from sd_course.core.device import resolve_device
from sd_course.core.errors import InputError, check_positive_int
from sd_course.core.plots import evenly_spaced
from sd_course.core.schedulers import (
    alpha_bar_at,
    check_num_inference_steps,
    check_timestep_spacing,
    default_num_inference_steps,
    make_scheduler,
    noise_schedule_of,
    resolve_scheduler_name,
    sigma_to_timestep,
    step_accepts,
    training_alphas_cumprod,
    with_noise_schedule,
    with_timestep_spacing,
)
from sd_course.core.seeds import image_seed
from sd_course.core.shipped import find_shipped, search_roots
from sd_course.pixel.analytic import named_denoiser

OUTPUT_TYPES = ("pil", "np", "pt")
PRETRAINED_ENV = "SD_COURSE_PRETRAINED"  # a pipeline folder (or Hub id) to use when no --model is given
SHIPPED_MODEL = "pipelines/ddpm-mnist"  # the pretrained model, found by sd_course.core.shipped (checkout or installed)
SAVED_CLASS_NAME = "DDPMPipeline"  # what model_index.json says, so that plain diffusers loads our folders too
# model_index.json classes whose folders hold exactly an unconditional pixel-space UNet2DModel + a scheduler
LOADABLE_PIPELINES = ("DDPMPipeline", "DDIMPipeline", "UnconditionalImagePipeline")


def x0_from_model_output(model_output, x_t, alpha_bar, prediction_type: str):
    """The clean-image estimate from the network's output, for the three parametrisations of diffusers:

    * ``epsilon``:      x0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar)        (the forward formula solved for x0)
    * ``v_prediction``: x0 = sqrt(abar) x_t - sqrt(1 - abar) v              (v = sqrt(abar) eps - sqrt(1-abar) x0)
    * ``sample``:       x0 = the output itself
    """
    alpha_bar = torch.as_tensor(alpha_bar, dtype=x_t.dtype, device=x_t.device).reshape(-1, *[1] * (x_t.ndim - 1))
    if prediction_type == "epsilon":
        return (x_t - (1 - alpha_bar).sqrt() * model_output) / alpha_bar.sqrt()
    if prediction_type == "v_prediction":
        return alpha_bar.sqrt() * x_t - (1 - alpha_bar).sqrt() * model_output
    if prediction_type == "sample":
        return model_output
    raise InputError(f"prediction_type {prediction_type!r} is not one of epsilon, v_prediction, sample")


def is_edm_scheduler(scheduler) -> bool:
    """EDM schedulers (EDMEulerScheduler, ...) precondition the network themselves (c_in, c_noise, c_skip, c_out)."""
    return all(hasattr(scheduler, name) for name in ("precondition_inputs", "precondition_noise",
                                                     "precondition_outputs"))


class UnconditionalImagePipeline(DiffusionPipeline):
    r"""Unconditional image generation that is right with any scheduler of ``DDPMScheduler.compatibles``.

    Loads a ``DDPMPipeline`` folder (``UnconditionalImagePipeline.from_pretrained(folder)``) and saves one
    (``_class_name: DDPMPipeline``, so ``DiffusionPipeline.from_pretrained`` still works where only diffusers is
    installed). Swap schedulers the standard way: ``pipe.scheduler = EulerDiscreteScheduler.from_config(
    pipe.scheduler.config)``.

    ``unet`` is a ``UNet2DModel`` or anything with its call signature (``sd_course.pixel.analytic``).
    """

    model_cpu_offload_seq = "unet"
    # what a callback_on_step_end may ask for (see TrajectoryRecorder)
    _callback_tensor_inputs = ["sample", "x_t", "pred_original_sample", "model_output"]

    def __init__(self, unet, scheduler):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)
        # [-1, 1] -> [0, 1] -> "pt" | "np" | "pil", as every diffusers pipeline does it
        self.image_processor = VaeImageProcessor(do_resize=False, do_normalize=True)

    def __setattr__(self, name, value):
        # The first scheduler is the training one (the folder's): remember its noise schedule. Any scheduler swapped
        # in later is held to it; `X.from_config(config)` can silently change the betas (see with_noise_schedule).
        if name == "scheduler" and value is not None and hasattr(value, "config"):
            if "noise_schedule" not in self.__dict__:
                self.__dict__["noise_schedule"] = noise_schedule_of(value)
            else:
                value = with_noise_schedule(value, self.__dict__["noise_schedule"])
        super().__setattr__(name, value)

    @property
    def training_alphas_cumprod(self) -> torch.Tensor:
        """``abar_t``, t = 0..T-1, of the noise schedule the model was trained with (float64)."""
        return training_alphas_cumprod(self.__dict__["noise_schedule"])

    def to_json_string(self) -> str:
        # model_index.json names the class to load; ours only runs the loop differently, with the same components,
        # so we save as DDPMPipeline: the folder then loads with plain diffusers too.
        config = json.loads(super().to_json_string())
        config["_class_name"] = SAVED_CLASS_NAME
        return json.dumps(config, indent=2, sort_keys=True) + "\n"

    @torch.no_grad()
    def __call__(
        self,
        batch_size: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        num_inference_steps: int | None = None,
        eta: float | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end=None,
        callback_on_step_end_tensor_inputs: list[str] = ("sample",),
    ) -> ImagePipelineOutput | tuple:
        r"""Generate ``batch_size`` images.

        Args:
            generator: a ``torch.Generator``, or one per image (then image i is the same whatever the batch).
            num_inference_steps: default: the scheduler's usual count (``sd_course.core.schedulers.SCHEDULERS``).
            eta: DDIM's noise level (0 = deterministic, 1 = DDPM-like); only for schedulers whose ``step`` takes it.
            output_type: ``"pil"`` (list of PIL images), ``"np"`` (N, H, W, C) or ``"pt"`` (N, C, H, W), in [0, 1].
            callback_on_step_end: ``f(pipe, i, t, tensors) -> dict`` after each model call, as in diffusers;
                ``tensors`` holds the names in ``callback_on_step_end_tensor_inputs``: ``sample`` (the scheduler's
                running sample; return a new one to replace it), ``x_t`` (the network's input, in the x_t scale of
                training), ``pred_original_sample`` (the predicted x_0) and ``model_output``.
        """
        batch_size = check_positive_int(batch_size, "batch_size")
        if output_type not in OUTPUT_TYPES:
            raise InputError(f"output_type {output_type!r} is not one of {list(OUTPUT_TYPES)}")
        unknown = set(callback_on_step_end_tensor_inputs) - set(self._callback_tensor_inputs)
        if unknown:
            raise InputError(f"callback_on_step_end_tensor_inputs {sorted(unknown)} are not among "
                             f"{self._callback_tensor_inputs}")
        steps = check_num_inference_steps(self.scheduler, num_inference_steps)
        step_kwargs = self._step_kwargs(generator, eta)
        device = self._execution_device

        size = self.unet.config.sample_size
        shape = (batch_size, self.unet.config.in_channels, *((size, size) if isinstance(size, int) else size))

        # 1. The sampler's time grid (and, for the sigma schedulers, its noise levels).
        self.scheduler.set_timesteps(steps, device=device)
        timesteps = self.scheduler.timesteps
        self._seed_brownian_noise(generator)

        # 2. x_T ~ N(0, I), times the scheduler's starting noise level: 1 for DDPM/DDIM, sqrt(sigma_max^2 + 1) ~ 157
        #    for Euler & co, which work with x_ve = x_t / sqrt(abar_t) (see sd_course/core/schedulers.py).
        sample = randn_tensor(shape, generator=generator, device=device, dtype=self.unet.dtype)
        sample = sample * self.scheduler.init_noise_sigma

        prediction_type = self.scheduler.config.get("prediction_type", "epsilon")
        alphas_cumprod = self.training_alphas_cumprod
        edm = is_edm_scheduler(self.scheduler)

        # 3. One network call per entry of scheduler.timesteps (Heun/KDPM2/DPM++ SDE list most steps twice).
        with self.progress_bar(total=len(timesteps)) as progress_bar:
            for i, t in enumerate(timesteps):
                if edm:
                    model_output, x_t, x0_hat, extra = self._edm_model_call(sample, t, alphas_cumprod, prediction_type)
                else:
                    # identity for DDPM/DDIM/DPM-Solver; x_ve / sqrt(sigma^2 + 1) = x_t for the sigma schedulers
                    x_t = self.scheduler.scale_model_input(sample, t)
                    model_output = self.unet(x_t, t).sample
                    extra = {}
                output = self._step(model_output, t, sample, prediction_type, **step_kwargs, **extra)

                if callback_on_step_end is not None:
                    x0 = getattr(output, "pred_original_sample", None)
                    if edm:
                        x0 = x0_hat
                    elif x0 is None:  # PNDM, DEIS, UniPC, DPM-Solver: their step output has no x_0; compute it
                        x0 = x0_from_model_output(model_output, x_t, alpha_bar_at(t.cpu(), alphas_cumprod),
                                                  prediction_type)
                    tensors = dict(sample=output.prev_sample, x_t=x_t, pred_original_sample=x0,
                                   model_output=model_output)
                    asked = {name: tensors[name] for name in callback_on_step_end_tensor_inputs}
                    returned = callback_on_step_end(self, i, t, asked) or {}
                    sample = returned.get("sample", output.prev_sample)
                else:
                    sample = output.prev_sample
                progress_bar.update()

        images = self.image_processor.postprocess(sample.float(), output_type=output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (images,)
        return ImagePipelineOutput(images=images)

    # -- the pieces of the loop that differ between schedulers ---------------------------------------------------

    def _step_kwargs(self, generator, eta) -> dict:
        """Only the keyword arguments this scheduler's ``step`` takes (PNDM, LMS, UniPC, DEIS, Heun and KDPM2 take
        no ``generator``; only DDIM takes ``eta``)."""
        kwargs = {}
        if step_accepts(self.scheduler, "generator"):
            kwargs["generator"] = generator
        if eta is not None:
            if not step_accepts(self.scheduler, "eta"):
                raise InputError(f"--eta is DDIM's noise level; {type(self.scheduler).__name__} has no eta: drop "
                                 "--eta, or use --scheduler ddim")
            if eta < 0:
                raise InputError(f"--eta must be >= 0 (0 = deterministic DDIM, 1 = DDPM-like), got {eta}")
            kwargs["eta"] = float(eta)
        return kwargs

    def _step(self, model_output, t, sample, prediction_type, **kwargs):
        try:
            return self.scheduler.step(model_output, t, sample, **kwargs)
        except (ValueError, NotImplementedError) as e:
            if "prediction_type" not in str(e):
                raise
            # measured on diffusers 0.42.1: PNDM, Euler-ancestral, KDPM2 and KDPM2-ancestral have no "sample"
            raise InputError(f"{type(self.scheduler).__name__} cannot sample a model trained with prediction_type "
                             f"{prediction_type!r} (diffusers: {e}); use another scheduler, e.g. ddim, euler, heun, "
                             "dpm++ or unipc") from e

    def _seed_brownian_noise(self, generator) -> None:
        """DPMSolverSDEScheduler draws its noise from a Brownian tree seeded by ``noise_sampler_seed`` (random when
        unset), not from a generator; seed it from the generator(s) so a seed makes its samples repeatable too."""
        if generator is None or not hasattr(self.scheduler, "noise_sampler_seed"):
            return
        generators = generator if isinstance(generator, list) else [generator]
        seeds = [int(torch.randint(0, 2**62, (), generator=g)) for g in generators]
        self.scheduler.noise_sampler_seed = seeds if isinstance(generator, list) else seeds[0]

    def _edm_model_call(self, sample, t, alphas_cumprod, prediction_type):
        """One call of a DDPM-trained network for an EDM scheduler (Karras et al. 2022).

        An EDM scheduler holds ``x = x_0 + sigma eps`` and expects a network in EDM form (input ``c_in x``,
        time ``c_noise = log(sigma) / 4``, output combined as ``x0 = c_skip x + c_out F``). Our network was trained
        on ``x_t = x / sqrt(1 + sigma^2)`` at the training timestep with the same sigma, so we call it that way,
        turn its output into x0 (Tweedie: ``x0 = x - sigma eps`` for an epsilon model) and hand x0 to ``step``.
        """
        self.scheduler.scale_model_input(sample, t)  # only to set the scheduler's step index (its c_in is not ours)
        sigma = self.scheduler.sigmas[self.scheduler.step_index].to(torch.float64)
        alpha_bar = 1 / (1 + sigma**2)  # abar = 1 / (1 + sigma^2)
        x_t = sample * alpha_bar.sqrt().to(sample.dtype)
        t_train = sigma_to_timestep(sigma, alphas_cumprod).to(device=sample.device, dtype=torch.float32)
        model_output = self.unet(x_t, t_train).sample
        x0 = x0_from_model_output(model_output, x_t, alpha_bar, prediction_type)
        if step_accepts(self.scheduler, "pred_original_sample"):  # EDMEulerScheduler: "skips recomputation"
            return model_output, x_t, x0, dict(pred_original_sample=x0)
        # otherwise invert x0 = c_skip x + c_out F, which is affine in F
        skip = self.scheduler.precondition_outputs(sample, torch.zeros_like(sample), sigma.to(sample.dtype))
        c_out = self.scheduler.precondition_outputs(torch.zeros_like(sample), torch.ones_like(sample),
                                                    sigma.to(sample.dtype))
        return (x0 - skip) / c_out, x_t, x0, {}


# ----------------------------------------------------------------------------------------------------------------
# Loading: a pipeline folder, a Hub id, the shipped model, or an analytic model
# ----------------------------------------------------------------------------------------------------------------


def default_model_path() -> str:
    """The model to use when none is given: ``$SD_COURSE_PRETRAINED``, else the package's pretrained MNIST model
    ``pipelines/ddpm-mnist`` (of the source checkout, or installed with the package: see ``sd_course/core/shipped.py``)."""
    env = os.environ.get(PRETRAINED_ENV)
    if env:
        if Path(env).expanduser().exists() and not (Path(env).expanduser() / "model_index.json").is_file():
            raise InputError(f"${PRETRAINED_ENV}={env!r} is not a pipeline folder (it has no model_index.json); "
                             "point it at one, or unset it and pass --model")
        return env
    shipped = find_shipped(SHIPPED_MODEL)
    if shipped is not None and (shipped / "model_index.json").is_file():
        return str(shipped)
    looked = ", ".join(str(root / SHIPPED_MODEL) for root in search_roots())
    raise InputError(
        f"no --model given, and no pretrained model was found (looked at ${PRETRAINED_ENV}, {looked}); "
        "pass --model DIR_OR_HUB_ID: a folder written by `sd-course train`, a Hub id, or analytic:mnist "
        "(the exact denoiser of 16 digits, no training needed)"
    )


def _looks_local(model: str) -> bool:
    return Path(model).expanduser().exists() or model.startswith((".", "/", "~")) or model.count("/") != 1


def check_pipeline_folder(folder: Path) -> dict:
    """A local pipeline folder's model_index.json, checked to be an unconditional UNet2DModel pipeline."""
    if not folder.exists():
        raise InputError(f"model folder {str(folder)!r} does not exist; pass a pipeline folder (with model_index.json, "
                         "unet/ and scheduler/) or a Hub id such as google/ddpm-cifar10-32")
    if not folder.is_dir():
        raise InputError(f"--model {str(folder)!r} is a file; pass the pipeline *folder* (with model_index.json)")
    index = folder / "model_index.json"
    if not index.is_file():
        hint = ""
        if (folder / "config.json").is_file():
            hint = " It looks like a single model's folder (config.json): pass its parent, the pipeline folder."
        elif any(folder.glob("*/model_index.json")):
            found = sorted(p.parent.name for p in folder.glob("*/model_index.json"))
            hint = f" Its sub-folders {found} are pipelines: pass one of them."
        raise InputError(f"{str(folder)!r} is not a diffusers pipeline folder: it has no model_index.json.{hint} "
                         "Pass the folder that `sd-course train` wrote (model_index.json + unet/ + scheduler/)")
    try:
        config = json.loads(index.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{index} is not valid JSON ({e}); re-save the pipeline") from e
    class_name = config.get("_class_name")
    unet = config.get("unet")
    if class_name not in LOADABLE_PIPELINES or not unet or "scheduler" not in config:
        raise InputError(f"{str(folder)!r} holds a {class_name} with components "
                         f"{sorted(k for k in config if not k.startswith('_'))}; sd-course samples unconditional "
                         f"pixel-space models ({', '.join(LOADABLE_PIPELINES[:2])} folders: unet + scheduler)")
    return config


def analytic_pipeline(name: str) -> UnconditionalImagePipeline:
    """``analytic:NAME``: the exact denoiser of a Gaussian mixture (``sd_course.pixel.analytic``) with a DDPM scheduler."""
    denoiser = named_denoiser(name)
    scheduler = DDPMScheduler(num_train_timesteps=len(denoiser.alphas_cumprod), beta_schedule="linear")
    return UnconditionalImagePipeline(unet=denoiser, scheduler=scheduler)


def load_pipeline(model: str | None = None, scheduler: str | None = None,
                  timestep_spacing: str | None = None, device: str | None = None) -> UnconditionalImagePipeline:
    """A pipeline folder, a Hub id or ``analytic:NAME`` -> :class:`UnconditionalImagePipeline`, with the scheduler
    swapped for ``scheduler`` (an alias such as ``euler-a`` or a class name) when given, and its steps placed by
    ``timestep_spacing`` when given (default: as the pipeline's scheduler config says). ``device``: where it runs
    (``"auto"``: the GPU when there is one; default: the CPU, as ``from_pretrained`` loads it).

        python -c "from sd_course.pixel.pipeline import load_pipeline; print(load_pipeline('analytic:mnist', 'dpm++'))"
    """
    if scheduler is not None:
        resolve_scheduler_name(scheduler)  # a typo in the name fails now, not after loading the weights
    check_timestep_spacing(timestep_spacing)  # and so does a typo in the spacing
    model = str(model) if model is not None else default_model_path()
    if model.startswith("analytic:"):
        pipe = analytic_pipeline(model.split(":", 1)[1])
    else:
        if _looks_local(model):
            check_pipeline_folder(Path(model).expanduser())
        try:
            pipe = UnconditionalImagePipeline.from_pretrained(str(Path(model).expanduser()) if _looks_local(model)
                                                              else model)
        except InputError:
            raise
        except Exception as e:  # OSError (not on the Hub / offline), ValueError, EnvironmentError...
            first_line = str(e).strip().splitlines()[0].rstrip(".") if str(e).strip() else ""
            raise InputError(f"could not load the pipeline {model!r}: {type(e).__name__}: {first_line}. Pass a local "
                             "pipeline folder, or a Hub id reachable now (HF_HUB_OFFLINE=1 allows only the cache)"
                             ) from e
    if scheduler is not None:
        pipe.scheduler = make_scheduler(scheduler, pipe.scheduler.config)
    pipe.scheduler = with_timestep_spacing(pipe.scheduler, timestep_spacing)
    if device is not None:
        pipe.to(resolve_device(device))
    return pipe


def as_unconditional_pipeline(pipe) -> UnconditionalImagePipeline:
    """Any pipeline with a ``unet`` and a ``scheduler`` (e.g. a stock DDPMPipeline) -> ours, sharing the modules."""
    if isinstance(pipe, UnconditionalImagePipeline):
        return pipe
    return UnconditionalImagePipeline(unet=pipe.unet, scheduler=pipe.scheduler)


# ----------------------------------------------------------------------------------------------------------------
# Many images, in chunks, repeatable
# ----------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def generate(pipe, num_images: int, batch_size: int = 64, num_inference_steps: int | None = None, seed: int = 0,
             eta: float | None = None, show_progress: bool = True) -> torch.Tensor:
    """``num_images`` samples as a uint8 tensor (N, C, H, W), made ``batch_size`` at a time.

    Repeatable: image i always comes from its own generator seeded with ``image_seed(seed, i)`` (initial noise and
    every step's noise), so the same seed gives the same images *whatever the batch size*, up to float rounding in
    the network (a pixel may differ by 1 level of 255 between batch sizes; measured in tests/pixel/test_pipeline.py).
    ``num_inference_steps=None`` uses the scheduler's usual count.
    """
    pipe = as_unconditional_pipeline(pipe)
    num_images = check_positive_int(num_images, "num_images")
    batch_size = check_positive_int(batch_size, "batch_size")
    steps = check_num_inference_steps(pipe.scheduler, num_inference_steps)
    pipe.set_progress_bar_config(disable=not show_progress, leave=False, desc="denoising")
    size = pipe.unet.config.sample_size
    hw = (size, size) if isinstance(size, int) else tuple(size)
    out = torch.empty((num_images, pipe.unet.config.in_channels, *hw), dtype=torch.uint8)  # kept on the CPU
    with tqdm(total=num_images, desc=f"sampling ({type(pipe.scheduler).__name__}, {steps} steps)", unit="img",
              disable=not show_progress) as bar:
        for start in range(0, num_images, batch_size):
            n = min(batch_size, num_images - start)
            generators = [torch.Generator().manual_seed(image_seed(seed, start + i)) for i in range(n)]
            images = pipe(batch_size=n, generator=generators, num_inference_steps=steps, eta=eta,
                          output_type="pt").images  # (n, C, H, W) in [0, 1]
            out[start:start + n] = to_uint8(images.cpu() * 2 - 1)
            bar.update(n)
    return out


# ----------------------------------------------------------------------------------------------------------------
# The reverse process, step by step (for sd_course.core.plots.trajectory figures)
# ----------------------------------------------------------------------------------------------------------------


class TrajectoryRecorder:
    """A ``callback_on_step_end`` that keeps x_t and the predicted x_0 at chosen model calls (all when None).

        recorder = TrajectoryRecorder()
        pipe(batch_size=4, callback_on_step_end=recorder, callback_on_step_end_tensor_inputs=recorder.tensor_inputs)
        recorder.x_t  # list of (N, C, H, W) float tensors in the model range, one per recorded call
    """

    tensor_inputs = ["x_t", "pred_original_sample"]

    def __init__(self, call_indices=None):
        self.call_indices = None if call_indices is None else set(int(i) for i in call_indices)
        self.indices, self.timesteps, self.x_t, self.x0 = [], [], [], []

    def __call__(self, pipe, i, t, tensors):
        if self.call_indices is None or i in self.call_indices:
            self.indices.append(i)
            self.timesteps.append(float(t))
            self.x_t.append(tensors["x_t"].detach().float().cpu())
            self.x0.append(tensors["pred_original_sample"].detach().float().cpu())
        return {}


def num_model_calls(pipe, num_inference_steps: int | None = None) -> int:
    """How many times the network runs for one image: ``len(scheduler.timesteps)`` after ``set_timesteps``."""
    steps = check_num_inference_steps(pipe.scheduler, num_inference_steps)
    pipe.scheduler.set_timesteps(steps)
    return len(pipe.scheduler.timesteps)


@torch.no_grad()
def record_trajectory(pipe, num_images: int = 4, num_inference_steps: int | None = None, seed: int = 0,
                      num_frames: int | None = None, eta: float | None = None, show_progress: bool = True) -> dict:
    """Run the reverse process once and keep x_t and the predicted x_0 at ``num_frames`` evenly spaced model calls
    (every call when None). Image i starts from the same noise as image i of ``generate(..., seed=seed)``.

    Returns ``{"timesteps": [...], "call_indices": [...], "x_t": (F, N, C, H, W), "x0": (F, N, C, H, W),
    "images": (N, C, H, W), ...}``, floats in the model range [-1, 1]; x_t is in the training scale of x_t
    (what the network sees), whatever the scheduler's own scale.
    """
    pipe = as_unconditional_pipeline(pipe)
    num_images = check_positive_int(num_images, "num_images")
    steps = check_num_inference_steps(pipe.scheduler, num_inference_steps)
    calls = num_model_calls(pipe, steps)
    picks = None
    if num_frames is not None:
        num_frames = check_positive_int(num_frames, "num_frames")
        picks = evenly_spaced(calls, num_frames)
    recorder = TrajectoryRecorder(picks)
    pipe.set_progress_bar_config(disable=not show_progress, leave=False, desc="denoising")
    generators = [torch.Generator().manual_seed(image_seed(seed, i)) for i in range(num_images)]
    final = pipe(batch_size=num_images, generator=generators, num_inference_steps=steps, eta=eta, output_type="pt",
                 callback_on_step_end=recorder, callback_on_step_end_tensor_inputs=recorder.tensor_inputs).images
    return dict(timesteps=recorder.timesteps, call_indices=recorder.indices, x_t=torch.stack(recorder.x_t),
                x0=torch.stack(recorder.x0), images=final.cpu() * 2 - 1, num_inference_steps=steps,
                num_model_calls=calls, scheduler=type(pipe.scheduler).__name__)


# ----------------------------------------------------------------------------------------------------------------
# Inpainting: fill a masked part of a real image with an unconditional model (RePaint, Lugmayr et al. 2022)
# ----------------------------------------------------------------------------------------------------------------


__all__ = [
    "UnconditionalImagePipeline", "load_pipeline", "generate", "default_model_path", "record_trajectory",
    "TrajectoryRecorder", "make_scheduler", "default_num_inference_steps", "num_model_calls", "x0_from_model_output",
    "inpaint", "load_inpaint_inputs",
]
