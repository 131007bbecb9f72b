"""Classifier-free guidance, written out: how Stable Diffusion makes a picture follow its prompt.

    sd-course sample --model pipelines/mini-sd-mnist --prompt "a handwritten seven" --guidance_scale 2 --output 7.png

    from sd_course.latent.guidance import generate_from_prompts, guided_sample
    images = generate_from_prompts(pipe, ["the number 3"], num_images_per_prompt=8, guidance_scale=2.0)  # uint8
    floats = guided_sample(pipe, ["the number 3"] * 2, guidance_scale=2.0)  # (2, C, H, W) in [0, 1]

:func:`guided_sample` is the denoising loop of diffusers' ``StableDiffusionPipeline.__call__``
(pipeline_stable_diffusion.py) with nothing hidden and nothing extra (no safety checker, callbacks, LoRA scales,
IP-Adapter, guidance rescale), in the four numbered steps of that file. For the same generators and scheduler it
gives the stock pipeline's images (tests/latent/test_guidance.py: within 1e-4 with DDPM, DDIM, DPM-Solver++, Euler-a).

The one U-Net was trained on captions and, a share ``--caption_dropout`` of the time, on the empty caption
(sd_course/latent/text_to_image.py), so at every step it can predict the noise in the latents z_t two ways:

    eps_u = eps_theta(z_t, t, "")         unconditional: the empty prompt (or the negative prompt, if one is given)
    eps_c = eps_theta(z_t, t, c)          conditional: the prompt c
    eps   = eps_u + w (eps_c - eps_u)     w = guidance_scale: extrapolate from "any digit" past "this digit"

and the scheduler takes the step z_t -> z_{t-1} with eps as if it were one model's prediction. Because eps_theta is
-sqrt(1 - abar_t) times the score grad log p(z_t), eps_c - eps_u is -sqrt(1 - abar_t) grad log p(c | z_t), the
gradient of an implicit classifier, and the guided eps follows grad log p(z_t) + w grad log p(c | z_t) at each
noise level (why, in full: the Q/A on classifier-free guidance in sd_course/latent/text_to_image.py). Caveat: that
field is not the score of the noised versions of any one distribution (not of p(x) p(c | x)^w), so guidance is a
well-tested heuristic, not exact sampling of a sharpened posterior. w = 1 is the conditional
model alone (eps = eps_c), and then the loop, as diffusers', skips the unconditional half: one U-Net call on B
latents per step instead of one on 2B.
Ho & Salimans (2022) write eps = (1 + w') eps_c - w' eps_u: their w' is guidance_scale - 1 (w' = 0: no guidance).

With guidance both halves go through the U-Net as ONE batch of 2B latents (uncond first, then cond, as diffusers
orders them): the arithmetic of two calls in one, with the B latents duplicated and the two texts stacked. A negative
prompt takes the place of "" in eps_u, so eps points away from it as well as toward the prompt. The prediction may
be eps or v (the scheduler's ``prediction_type``): both are linear in the score, so the guidance line is the same.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import torch
import yaml
from huggingface_hub import hf_hub_download
from huggingface_hub.repocard import metadata_load
from tqdm.auto import tqdm

from sd_course.core.data import to_uint8
from sd_course.core.errors import InputError
from sd_course.core.schedulers import step_accepts
from sd_course.core.seeds import image_seed
from sd_course.latent.text import tokenize


DEFAULT_GUIDANCE = 2.0  # for a model whose card recommends none: the first mini-SD's best (benchmarks/README.md §8)


def recommended_guidance(model: str | Path | None) -> float:
    """The guidance scale the card of a text-to-image model recommends, else :data:`DEFAULT_GUIDANCE`.

    The best w moves with the model: the epsilon mini-SD was best at 2, a v-prediction one trained on captions with
    filler words reads its prompt at w = 1 and is over-sharpened at 2 (benchmarks/README.md §8, §15). So the
    guidance a model was evaluated at travels with it, in the YAML header of its card (``sd-course export`` writes
    it), where the Hub keeps a model's inference defaults::

        inference:
          parameters:
            guidance_scale: 1.5

    ``model``: a pipeline folder (its README.md) or a Hub id (its README.md from the local cache or the Hub). No
    card, no entry, or a card that cannot be read: the default. ``sd-course sample``, ``evaluate``, ``compare`` and
    the demo use it when no ``--guidance_scale`` is given."""
    inference = (_card_metadata(model) or {}).get("inference") if model else None
    parameters = inference.get("parameters") if isinstance(inference, dict) else None
    value = parameters.get("guidance_scale") if isinstance(parameters, dict) else None
    if value is None:
        return DEFAULT_GUIDANCE
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 1:
        warnings.warn(f"the card of {model} recommends guidance_scale {value!r}, which is not a number >= 1; "
                      f"using {DEFAULT_GUIDANCE:g} (pass --guidance_scale to choose)", stacklevel=2)
        return DEFAULT_GUIDANCE
    return float(value)


def _card_metadata(model: str | Path) -> Optional[dict]:
    """The YAML header of a model's README.md (a folder's own, else a Hub repo's), or None."""
    folder = Path(str(model)).expanduser()
    try:
        card = folder / "README.md" if folder.is_dir() else Path(hf_hub_download(str(model), "README.md"))
        metadata = metadata_load(card) if card.is_file() else None
        return metadata if isinstance(metadata, dict) else None
    except (OSError, ValueError, yaml.YAMLError):  # no card, offline, not a Hub id, a broken header: no advice
        return None


def check_guidance_and_size(pipe, guidance_scale: float, height: Optional[int] = None,
                            width: Optional[int] = None) -> None:
    """Refuse what the stock pipeline would take silently or fail on deep inside."""
    if guidance_scale < 1:
        raise InputError(f"--guidance_scale {guidance_scale} is below 1: 1 means no guidance (the conditional model "
                         "alone), larger values follow the prompt more closely (try 2-5)")
    factor = pipe.vae_scale_factor * 2 ** (len(pipe.unet.config.block_out_channels) - 1)
    native = pipe.unet.config.sample_size * pipe.vae_scale_factor
    for name, value in (("height", height), ("width", width)):
        if value is not None and (value <= 0 or value % factor):
            raise InputError(f"--{name} {value} cannot be taken by this VAE and U-Net (multiples of {factor}; the "
                             f"model was trained at {native}): use --{name} {native}")


def encode_text(pipe, texts: list[str]) -> torch.Tensor:
    """(B, L, D) token vectors of ``texts``: token ids padded to ``model_max_length`` exactly as
    ``StableDiffusionPipeline.encode_prompt`` pads them, through the text encoder (its last hidden state).

    Every vector is kept, the padding's too: the U-Net's cross-attention reads all L of them. CLIP's text encoder
    takes no attention mask (encode_prompt passes one only to encoders whose config sets ``use_attention_mask``)."""
    device = pipe._execution_device
    ids = tokenize(pipe.tokenizer, texts).to(device)
    return pipe.text_encoder(ids)[0].to(dtype=pipe.text_encoder.dtype, device=device)


@torch.no_grad()
def guided_sample(pipe, prompts: list[str], negative_prompt: str | Sequence[str] | None = None,
                  num_inference_steps: int = 25, guidance_scale: float = 4.0,
                  generators: Optional[list[torch.Generator]] = None, height: Optional[int] = None,
                  width: Optional[int] = None, eta: float = 0.0) -> torch.Tensor:
    """Float images (B, C, H, W) in [0, 1], image i of ``prompts[i]`` drawn with ``generators[i]`` (default: the
    seeds ``image_seed(0, i)``): what ``pipe(prompts, negative_prompt=..., generator=generators,
    output_type="pt").images`` gives, as an explicit loop. ``eta`` is DDIM's (0: deterministic)."""
    unet, vae, scheduler = pipe.unet, pipe.vae, pipe.scheduler
    device = pipe._execution_device
    batch = len(prompts)
    if generators is None:
        generators = [torch.Generator().manual_seed(image_seed(0, i)) for i in range(batch)]
    if len(generators) != batch:
        raise InputError(f"{len(generators)} generators for {batch} prompts: pass one per image")
    if unet.config.time_cond_proj_dim is not None:  # a guidance-distilled (LCM-like) U-Net reads w as an input
        raise InputError("this U-Net takes the guidance scale as an input (time_cond_proj_dim): it is not sampled "
                         "with classifier-free guidance")
    guided = guidance_scale > 1  # w = 1: eps = eps_c, the unconditional half is not needed
    sample_size = unet.config.sample_size
    latent_h, latent_w = (sample_size, sample_size) if isinstance(sample_size, int) else sample_size
    height = height or latent_h * pipe.vae_scale_factor
    width = width or latent_w * pipe.vae_scale_factor

    # 1. The text, c and "" -> token vectors (B, L, D) for the cross-attention: the condition of eps_theta(z_t, t, c).
    text = encode_text(pipe, prompts)  # the prompt c, of eps_c
    if guided:
        if negative_prompt is None:
            negatives = [""] * batch  # the empty caption: the unconditional model that caption dropout trained
        elif isinstance(negative_prompt, str):
            negatives = [negative_prompt] * batch
        else:
            negatives = list(negative_prompt)
            if len(negatives) != batch:
                raise InputError(f"{len(negatives)} negative prompts for {batch} prompts: pass one, or one per prompt")
        # (2B, L, D), unconditional half first: one U-Net call predicts eps_u and eps_c together.
        text = torch.cat([encode_text(pipe, negatives), text])

    # 2. The timesteps t_1 > ... > t_n the sampler visits among the T training steps, and the start z_T ~ N(0, I):
    #    one (1, C, h, w) draw per image from its own generator (as diffusers' randn_tensor does with a list of
    #    generators, on the generator's device), so an image does not depend on the batch it is drawn in. The
    #    "sigma" samplers (Euler, Heun, ...) work with x_t / sqrt(abar_t) and start from std sigma_max, not 1:
    #    init_noise_sigma is that scale.
    scheduler.set_timesteps(num_inference_steps, device=device)
    shape = (1, unet.config.in_channels, int(height) // pipe.vae_scale_factor, int(width) // pipe.vae_scale_factor)
    noise = [torch.randn(shape, generator=g, device=g.device, dtype=text.dtype) for g in generators]
    latents = torch.cat(noise).to(device) * scheduler.init_noise_sigma
    # eta and the generator go only to samplers whose step() takes them (diffusers' prepare_extra_step_kwargs):
    # the generators, already past the start noise, then draw the fresh noise of the stochastic samplers.
    step_kwargs = {}
    if step_accepts(scheduler, "eta"):
        step_kwargs["eta"] = eta
    if step_accepts(scheduler, "generator"):
        step_kwargs["generator"] = generators

    # 3. The denoising loop: at each t, predict the noise with and without the prompt, guide, step z_t -> z_{t-1}.
    for t in scheduler.timesteps:
        model_input = torch.cat([latents] * 2) if guided else latents  # the same z_t for both halves
        model_input = scheduler.scale_model_input(model_input, t)  # the x_t the network was trained on (sigma form)
        prediction = unet(model_input, t, encoder_hidden_states=text, return_dict=False)[0]
        if guided:
            eps_u, eps_c = prediction.chunk(2)
            prediction = eps_u + guidance_scale * (eps_c - eps_u)  # eps = eps_u + w (eps_c - eps_u)
        latents = scheduler.step(prediction, t, latents, **step_kwargs, return_dict=False)[0]

    # 4. Latents -> pixels: undo the scaling that gave the latents unit variance in training (z = s x_vae), decode,
    #    and map the decoder's [-1, 1] to [0, 1] (diffusers' VaeImageProcessor.postprocess, "pt").
    images = vae.decode(latents / vae.config.scaling_factor, return_dict=False)[0]
    return (images / 2 + 0.5).clamp(0, 1)


@torch.no_grad()
def generate_from_prompts(pipe, prompts: list[str], num_images_per_prompt: int = 1, num_inference_steps: int = 25,
                          guidance_scale: float = 4.0, negative_prompt: Optional[str] = None, seed: int = 0,
                          batch_size: int = 100, show_progress: bool = False, height: Optional[int] = None,
                          width: Optional[int] = None) -> torch.Tensor:
    """uint8 images (N, C, H, W) for each prompt x ``num_images_per_prompt``; image i of prompt p uses its own seed,
    so results do not depend on the batch size."""
    check_guidance_and_size(pipe, guidance_scale, height, width)
    jobs = [(p, k) for p in prompts for k in range(num_images_per_prompt)]
    out = []
    for start in tqdm(range(0, len(jobs), batch_size), desc="sampling", disable=not show_progress):
        chunk = jobs[start:start + batch_size]
        generators = [torch.Generator().manual_seed(image_seed(seed, start + i)) for i in range(len(chunk))]
        images = guided_sample(pipe, [p for p, _ in chunk], negative_prompt or None, num_inference_steps,
                               guidance_scale, generators, height, width)  # (B, C, H, W) in [0, 1]
        out.append(to_uint8(images * 2 - 1))
    images = torch.cat(out)
    return images[:, :1] if pipe.vae.config.out_channels == 1 else images
