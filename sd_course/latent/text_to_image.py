"""Text-to-image: a mini Stable Diffusion trained from scratch, saved as a real ``StableDiffusionPipeline``.

    accelerate launch --num_cpu_threads_per_process 2 training/train_text_to_image.py \\
        --config training/configs/mini-sd-mnist.yaml --dataset_name ../shared/data/mnist --output_dir runs/mini-sd
    sd-course sample --model pipelines/mini-sd-mnist --prompt "a handwritten seven" --guidance_scale 2 --output 7.png
    python -c "from diffusers import StableDiffusionPipeline as P; P.from_pretrained('pipelines/mini-sd-mnist')('3')"

Every part is a standard class, trained here, offline (Rombach et al. 2022, with CLIP's text tower):

    vae           AutoencoderKL        sd_course/latent/autoencoder.py; frozen: the images are encoded once, then cached
    tokenizer     CLIPTokenizer        byte-level BPE learnt here from the captions (vocab.json + merges.txt)
    text_encoder  CLIPTextModel        a 4-layer transformer, trained jointly with the U-Net
    unet          UNet2DConditionModel denoiser of 4x8x8 latents, reading the caption through cross-attention
    scheduler     DDPMScheduler        the noise schedule (swap in any of the compatible samplers)

One training step (the diffusion step of sd_course/pixel/diffusion.py, in latent space and with a caption):

    z_0 = scaling_factor * (mu(x) + sigma(x) eps')      # a sample of the frozen VAE's q(z | x), scaled to unit variance
    c   = caption(label), or "" with probability p      # --caption_dropout: the model also learns the unconditional score
    z_t = sqrt(abar_t) z_0 + sqrt(1 - abar_t) eps
    loss = || eps - eps_theta(z_t, t, text_encoder(c)) ||^2

Q: How does the U-Net function as a denoiser within the Stable Diffusion framework?
A: Exactly as in pixel space (sd_course/pixel/diffusion.py), with two changes: it denoises the VAE's latents instead
   of pixels, and it reads the caption. In the shipped ``pipelines/mini-sd-mnist`` (its unet/ and scheduler/ configs)
   it is a ``UNet2DConditionModel`` of 5.8M parameters on 4x8x8 latents (a 28x28 digit padded to 32x32 and encoded
   with f = 4): two levels, 64 channels at 8x8 and 128 at 4x4, two residual blocks per level. It predicts the noise
   (``prediction_type: epsilon``) under the cosine schedule (``squaredcos_cap_v2``, T = 1000), with no clipping of
   x0_hat (``clip_sample: false``: latents are not confined to [-1, 1]) and "leading" step placement
   (``steps_offset: 1``), which an epsilon model needs here: "trailing" would start the sampler at t = 999, where
   abar = 2.4e-9, and x0_hat = (z_t - sqrt(1 - abar) eps_hat) / sqrt(abar) multiplies the error of eps_hat by
   20,000 (a 600-step run drew noise so, FID 1,035, and recognisable digits, FID 106, sampled "leading"; the config
   now refuses the pair). The caption enters through cross-attention, only at the 4x4 level: six transformer blocks
   (two in the down block, one in the middle, three in the up block), each a self-attention over the 16 positions
   followed by a cross-attention with 8 heads. Its queries come from the U-Net's feature map (one per latent
   position), its keys and values from the token vectors of the 4-layer CLIP text encoder (width 128 =
   ``cross_attention_dim``, at most 77 tokens), so every position mixes in the tokens that matter to it ("seven" for
   the stroke of a 7). The 8x8 level is plain convolution. The caption was replaced by "" for 10% of the training
   examples (``caption_dropout: 0.1``; in the last 4 of its 14 epochs half of those by filler words alone, see
   sd_course/latent/text.py), so with the empty caption the same network gives the unconditional prediction, which
   classifier-free guidance needs.
Cmd: sd-course sample --model pipelines/mini-sd-mnist --prompt "a handwritten seven" --output sevens.png

Q: What does classifier-free guidance compute, and why does it work?
A: ``eps = eps_uncond + g (eps_cond - eps_uncond)``, with ``eps_uncond = eps_theta(z_t, t, "")``,
   ``eps_cond = eps_theta(z_t, t, c)`` and g diffusers' ``guidance_scale`` (in ``sd-course sample``, the one the
   model's card recommends, else 2: ``recommended_guidance`` in sd_course/latent/guidance.py). Ho & Salimans write the same thing as ``(1 + w) eps_cond - w eps_uncond``: their w is
   ``guidance_scale - 1``, and their w = 0 is g = 1, plain conditional sampling. Since
   ``eps_theta(z_t) = -sqrt(1 - abar_t) grad log p_t(z_t)`` (the score), Bayes' rule
   ``log p_t(z_t | c) = log p_t(c | z_t) + log p_t(z_t) - log p(c)`` gives
   ``grad log p_t(c | z_t) = (eps_uncond - eps_cond) / sqrt(1 - abar_t)``: the difference of the two predictions is
   the gradient of an *implicit classifier*, and guidance adds (g - 1) times it to the conditional score. At each t
   the guided field is the score of the tilted density ``p_t(z_t) p_t(c | z_t)^g``, but these tilted densities are in
   general not the noised versions of one distribution, and not those of ``p(z_0) p(c | z_0)^g`` (noising it gives
   something else for g != 1), so the sampler does not draw from ``p(z_0) p(c | z_0)^g``, and what it draws has no
   closed form in general (docs/derivations.md section 5). What it does is push z_t towards where the implicit
   classifier is confident: images that are more unmistakably "a seven", at the cost of variety.
   benchmarks/guidance_sweep.py measures the trade-off on our model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline
from tqdm.auto import tqdm
from transformers import CLIPTextConfig, CLIPTextModel

from sd_course.core.data import load_hf_dataset, load_run_dataset
from sd_course.core.errors import InputError
from sd_course.core.models import build_conditional_unet, build_text_encoder, count_parameters
from sd_course.core.schedulers import TIMESTEP_SPACINGS, make_scheduler, quiet_diffusers, resolve_scheduler_name
from sd_course.core.shipped import find_shipped
from sd_course.latent.autoencoder import latent_shape, load_vae
from sd_course.latent.text import (
    TRAIN_TEMPLATES,
    caption,
    caption_stems,
    digit_prompts,
    filler_caption,
    known_words,
    save_tokenizer,
    tokenize,
    train_tokenizer,
)
from sd_course.pixel.diffusion import DiffusionConfig, diffusion_loss, make_noise_scheduler, noise_batch
from sd_course.train.config import option
from sd_course.train.loop import Objective


@dataclass
class TextToImageConfig(DiffusionConfig):
    # --- components ---------------------------------------------------------------------------------------------
    pretrained_model_name_or_path: Optional[str] = option(
        None, "start from an existing text-to-image pipeline (a folder or a Hub id): its vae, tokenizer, text encoder, "
              "U-Net and scheduler; default: new ones, with --vae_name_or_path")
    vae_name_or_path: Optional[str] = option(None, "the trained AutoencoderKL (a folder; default: the shipped "
                                                   "pipelines/vae-mnist)")
    model_config_name_or_path: str = option("mini-sd", "UNet2DConditionModel preset (mini-sd, tiny-sd) or a config.json")
    text_encoder_config: str = option("mini-sd", "CLIPTextModel preset (mini-sd, tiny-sd)")
    tokenizer_max_length: int = option(77, "tokens per caption (with start and end; CLIP's 77); longer prompts are "
                                           "truncated. From a pipeline with a shorter context, the text encoder's "
                                           "position table is extended (extend_context)")
    # --- captions -------------------------------------------------------------------------------------------------
    caption_column: Optional[str] = option(None, "a column of captions; default: captions made from --label_column")
    label_column: str = option("label", "class labels the captions are made from (digits: 'a handwritten seven')")
    caption_dropout: float = option(0.1, "share of empty captions: teaches the unconditional score for guidance")
    filler_captions: float = option(0.0, "share of captions given 1-12 random filler words around the digit's words "
                                         "(sd_course/latent/text.py filler_caption), so that words never seen in "
                                         "training are ignored, not read as noise; as large a share of the dropped "
                                         "captions becomes filler only (a prompt naming no digit: any digit)")
    validation_prompts: Optional[list] = option(None, "prompts of the sample grids (default: the ten digits)")
    validation_guidance_scale: float = option(4.0, "classifier-free guidance scale of the sample grids")
    # --- what differs from the pixel-diffusion defaults -------------------------------------------------------------
    resolution: int = option(32, "images are padded (or resized) to this size before encoding (the VAE's size)")
    resize_mode: str = option("pad", "how other sizes are brought to --resolution (digits: pad 28 -> 32)",
                              choices=("resize", "pad", "center_crop"))
    output_dir: str = option("runs/mini-sd", "where the pipeline, checkpoints, samples and logs go")
    ddpm_num_inference_steps: int = option(25, "DDIM steps for the sample grids saved during training")
    # An epsilon model's x0_hat = (z_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t) is not clipped for latents, so a
    # sampler that starts at t = T-1 of the cosine schedule (abar = 2.4e-9, "trailing") multiplies the error of
    # eps_hat by 1 / sqrt(abar) = 20,000 at its first step: the samples are noise. "leading" starts at t ~ T - T/n.
    timestep_spacing: str = option("leading", "how samplers place n steps among the T training timesteps (trailing "
                                              "only with --prediction_type v_prediction or sample)",
                                   choices=TIMESTEP_SPACINGS)

    POSITIVE = DiffusionConfig.POSITIVE + ("tokenizer_max_length",)

    def validate(self) -> None:
        super().validate()
        if not 0 <= self.caption_dropout < 1:
            raise InputError(f"--caption_dropout must be in [0, 1), got {self.caption_dropout} (0.1 is usual)")
        if not 0 <= self.filler_captions <= 1:
            raise InputError(f"--filler_captions must be in [0, 1], got {self.filler_captions} (0.5: half the captions)")
        if self.validation_guidance_scale < 1:
            raise InputError(f"--validation_guidance_scale must be >= 1, got {self.validation_guidance_scale}")
        if self.prediction_type == "epsilon" and self.timestep_spacing == "trailing":
            abar_last = float(make_noise_scheduler(self).alphas_cumprod[-1])
            if abar_last ** 0.5 < 1e-3:  # x0_hat would multiply the noise estimate's error > 1,000x at the first step
                raise InputError(
                    f"--timestep_spacing trailing with --prediction_type epsilon starts sampling at t = "
                    f"{self.ddpm_num_steps - 1}, where abar = {abar_last:.2g}: x0_hat divides by sqrt(abar) and the "
                    "samples are noise; use --timestep_spacing leading, or --prediction_type v_prediction")


# ----------------------------------------------------------------------------------------------------------------
# The trainable model and the objective
# ----------------------------------------------------------------------------------------------------------------


class TextConditionedUNet(torch.nn.Module):
    """The two trained parts of Stable Diffusion in one module: the text encoder feeds the U-Net's cross-attention."""

    def __init__(self, unet, text_encoder):
        super().__init__()
        self.unet, self.text_encoder = unet, text_encoder

    def forward(self, noisy_latents, timesteps, input_ids):
        tokens = self.text_encoder(input_ids)[0]  # (B, L, D): one vector per token, the keys/values of cross-attention
        return self.unet(noisy_latents, timesteps, encoder_hidden_states=tokens).sample


class LatentCache(torch.utils.data.Dataset):
    """The training set as the frozen VAE sees it, encoded once: q(z | x) = N(mean, std^2) per image, plus labels."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, labels: Optional[torch.Tensor],
                 caption_ids: Optional[torch.Tensor]):
        self.mean, self.std, self.labels, self.caption_ids = mean, std, labels, caption_ids

    def __len__(self):
        return len(self.mean)

    def __getitem__(self, i):
        item = {"latent_mean": self.mean[i], "latent_std": self.std[i], "index": i}
        if self.labels is not None:
            item["labels"] = int(self.labels[i])
        if self.caption_ids is not None:
            item["input_ids"] = self.caption_ids[i]
        return item


@torch.no_grad()
def encode_dataset(vae, dataset, batch_size: int = 256, show_progress: bool = True):
    """Encode every image once with the frozen VAE: returns the posterior (mean, std) of all of them."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    means, stds = [], []
    for batch in tqdm(loader, desc="encoding latents", disable=not show_progress):
        dist = vae.encode(batch["pixel_values"]).latent_dist
        means.append(dist.mean)
        stds.append(dist.std)
    return torch.cat(means), torch.cat(stds)


class TextToImage(Objective):
    """Train a mini Stable Diffusion (text encoder + conditional U-Net on VAE latents) (sd_course)."""

    name = "train_text_to_image"
    config_class = TextToImageConfig

    # ---- components ---------------------------------------------------------------------------------------------
    def _components(self, texts: list[str]):
        """(vae, tokenizer, text_encoder, unet, noise_scheduler): new ones, or from --pretrained_model_name_or_path."""
        cfg = self.cfg
        if cfg.pretrained_model_name_or_path:
            vae, tokenizer, text_encoder, unet, scheduler = load_components(cfg.pretrained_model_name_or_path)
            if cfg.tokenizer_max_length > tokenizer.model_max_length:
                text_encoder = extend_context(text_encoder, cfg.tokenizer_max_length)
                tokenizer.model_max_length = cfg.tokenizer_max_length
            return vae, tokenizer, text_encoder, unet, scheduler
        vae = load_vae(cfg.vae_name_or_path or default_vae_path())
        tokenizer = train_tokenizer(texts, cfg.tokenizer_max_length)
        text_encoder = build_text_encoder(cfg.text_encoder_config, vocab_size=len(tokenizer.get_vocab()),
                                          max_length=cfg.tokenizer_max_length, bos_token_id=tokenizer.bos_token_id,
                                          eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        channels, size, _ = latent_shape(vae, cfg.resolution)
        unet = build_conditional_unet(cfg.model_config_name_or_path, size, channels, text_encoder.config.hidden_size)
        # Latents are not confined to [-1, 1] as pixels are: no clipping of the predicted z_0 (as Stable Diffusion);
        # "leading" steps start at t = 1 (steps_offset, as Stable Diffusion's configs; the pipeline would insist).
        return vae, tokenizer, text_encoder, unet, make_noise_scheduler(cfg, clip_sample=False, steps_offset=1)

    def build(self, accelerator):
        cfg = self.cfg
        with accelerator.main_process_first():
            raw = load_hf_dataset(cfg.dataset_name, cfg.train_data_dir, cfg.split, cfg.dataset_config_name, cfg.cache_dir)
            captions = None
            if cfg.caption_column is not None:
                if cfg.caption_column not in raw.column_names:
                    raise InputError(f"--caption_column {cfg.caption_column!r} is not a column of the dataset; its "
                                     f"columns are {raw.column_names} (or leave it out to make captions from labels)")
                captions = list(raw[cfg.caption_column][: cfg.max_train_samples or len(raw)])
            elif cfg.label_column not in raw.column_names:
                raise InputError(f"--label_column {cfg.label_column!r} is not a column of the dataset; its columns are "
                                 f"{raw.column_names}: pass the column of class labels, or --caption_column")
        images, info = load_run_dataset(cfg, accelerator, cfg.label_column)
        self.captions = captions
        texts = captions if captions is not None else [text for _, text in digit_prompts()]
        self.stems = caption_stems(texts)
        self.vae, self.tokenizer, text_encoder, unet, self.noise_scheduler = self._components(texts + [""])
        self.vae.requires_grad_(False)
        if self.vae.config.in_channels != info.num_channels:
            raise InputError(f"the VAE takes {self.vae.config.in_channels}-channel images, the dataset has "
                             f"{info.num_channels}: pass --image_mode {'L' if self.vae.config.in_channels == 1 else 'RGB'}")
        mean, std = encode_dataset(self.vae, images, show_progress=accelerator.is_local_main_process)
        self.scaling_factor = self.vae.config.scaling_factor
        if captions is None:  # captions from labels: all (template, digit) token ids, looked up per step
            self.template_ids = torch.stack([tokenize(self.tokenizer, [caption(d, t) for d in range(10)])
                                             for t in TRAIN_TEMPLATES])  # (templates, 10, L)
            labels = getattr(images, "labels", None)
            if labels is None:
                raise InputError("the dataset has no labels to make captions from: pass --caption_column")
            dataset = LatentCache(mean, std, labels, None)
        else:
            dataset = LatentCache(mean, std, None, tokenize(self.tokenizer, captions))
        self.empty_ids = tokenize(self.tokenizer, [""])[0]
        return dataset, info, TextConditionedUNet(unet, text_encoder)

    # ---- one step -------------------------------------------------------------------------------------------------
    def captions_for(self, batch, generator: torch.Generator) -> torch.Tensor:
        """Token ids of one caption per image:
        1. a random template of its label (or its own caption);
        2. with probability --filler_captions, random filler words around its words (text.filler_caption);
        3. with probability --caption_dropout, no caption: the empty one, or filler only (as often as step 2 fills)."""
        n = len(batch["index"])
        if "input_ids" in batch:
            ids = batch["input_ids"].cpu().clone()
        else:
            templates = torch.randint(0, len(TRAIN_TEMPLATES), (n,), generator=generator)
            ids = self.template_ids[templates, batch["labels"].cpu()]
        drop = torch.rand(n, generator=generator) < self.cfg.caption_dropout
        if self.cfg.filler_captions > 0:
            filled = torch.rand(n, generator=generator) < self.cfg.filler_captions

            def fits(text: str) -> bool:  # the caption still fits the text encoder: the digit's word is never cut
                return len(self.tokenizer(text, verbose=False).input_ids) <= self.tokenizer.model_max_length

            texts = {}
            for i in filled.nonzero().flatten().tolist():
                if drop[i]:
                    text = ""
                elif self.captions is not None:
                    text = self.captions[int(batch["index"][i])]
                else:
                    text = caption(int(batch["labels"][i]), TRAIN_TEMPLATES[int(templates[i])])
                texts[i] = filler_caption(text, generator, self.stems, fits=fits)
            drop &= ~filled
            if texts:
                ids[list(texts)] = tokenize(self.tokenizer, list(texts.values()))
        ids[drop] = self.empty_ids
        return ids

    def loss(self, model, batch, generator):
        mean = batch["latent_mean"]
        eps = torch.randn(mean.shape, generator=generator).to(mean.device)
        z0 = (mean + batch["latent_std"] * eps) * self.scaling_factor  # a sample of q(z | x), scaled to unit variance
        input_ids = self.captions_for(batch, generator).to(mean.device)
        noisy, noise, timesteps = noise_batch(self.noise_scheduler, z0, generator, self.cfg.noise_offset,
                                              self.cfg.timestep_sampling)
        prediction = model(noisy, timesteps, input_ids)
        return diffusion_loss(self.noise_scheduler, prediction, z0, noise, timesteps, self.cfg.snr_gamma)

    # ---- what users load ------------------------------------------------------------------------------------------
    def saveable(self, model):
        return make_pipeline(self.vae, self.tokenizer, model.text_encoder, model.unet, self.noise_scheduler)

    def sample_images(self, pipe):
        """Each validation prompt (default: the ten digits) with two seeds, DDIM, guidance as configured."""
        prompts = self.cfg.validation_prompts or [caption(d, TRAIN_TEMPLATES[0]) for d in range(10)]
        pipe.scheduler = DDIMScheduler.from_config(self.noise_scheduler.config)
        pipe.set_progress_bar_config(disable=True)
        images = []
        for seed in (self.cfg.seed, self.cfg.seed + 1):
            images += pipe(prompts, num_inference_steps=self.cfg.ddpm_num_inference_steps,
                           guidance_scale=self.cfg.validation_guidance_scale,
                           generator=torch.Generator().manual_seed(seed)).images
        return images, 2

    def summary(self, pipe) -> dict:
        return {"parameters": {name: count_parameters(getattr(pipe, name)) for name in ("vae", "text_encoder", "unet")},
                "vocabulary": len(self.tokenizer.get_vocab()), "caption_words": known_words(self.tokenizer) and
                len(known_words(self.tokenizer)), "scaling_factor": self.scaling_factor}


# ----------------------------------------------------------------------------------------------------------------
# The pipeline folder
# ----------------------------------------------------------------------------------------------------------------


def make_pipeline(vae, tokenizer, text_encoder, unet, scheduler):
    """A standard ``StableDiffusionPipeline`` (no safety checker: digits need none)."""
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.tokenizer.caption_words = getattr(tokenizer, "caption_words", None) or sorted(known_words(tokenizer) or [])
    _patch_tokenizer_saving(pipe)
    return pipe


def _patch_tokenizer_saving(pipe) -> None:
    """Make ``pipe.save_pretrained`` also write vocab.json, merges.txt and the caption words into ``tokenizer/``."""
    original = pipe.save_pretrained

    def save_pretrained(save_directory, *args, **kwargs):
        original(save_directory, *args, **kwargs)
        save_tokenizer(pipe.tokenizer, Path(save_directory) / "tokenizer")

    pipe.save_pretrained = save_pretrained


def load_components(name_or_path: str):
    """(vae, tokenizer, text_encoder, unet, scheduler) of an existing text-to-image pipeline (folder or Hub id)."""
    try:
        pipe = StableDiffusionPipeline.from_pretrained(name_or_path, safety_checker=None, requires_safety_checker=False)
    except Exception as e:
        raise InputError(f"--pretrained_model_name_or_path {name_or_path!r} could not be loaded as a "
                         f"StableDiffusionPipeline ({type(e).__name__}: {e})") from e
    return pipe.vae, pipe.tokenizer, pipe.text_encoder, pipe.unet, pipe.scheduler


def extend_context(text_encoder: CLIPTextModel, max_length: int) -> CLIPTextModel:
    """The same text encoder reading ``max_length`` tokens: a new ``CLIPTextModel`` with every trained weight, whose
    position table keeps the trained rows and fills the new ones with a copy of the last trained row.

    Why the last row: in training, the last positions of a short context always held padding, so a longer prompt's
    new positions start out read as padding was (the model draws what it drew before) and training with longer
    captions (``--filler_captions``) then teaches them; a random start would feed cross-attention vectors it never saw."""
    old = text_encoder.config.max_position_embeddings
    config = CLIPTextConfig(**{**text_encoder.config.to_dict(), "max_position_embeddings": max_length})
    extended = CLIPTextModel(config)
    state = text_encoder.state_dict()
    key = next(k for k in state if k.endswith("embeddings.position_embedding.weight"))  # the name varies by version
    table = state[key]
    state[key] = torch.cat([table, table[-1:].expand(max_length - old, -1)])
    extended.load_state_dict(state)
    return extended.to(text_encoder.dtype)


def is_text_to_image(folder: str | Path) -> bool:
    """True for a folder holding a text-to-image pipeline (model_index.json with a text_encoder)."""
    index = Path(folder) / "model_index.json"
    if not index.is_file():
        return False
    try:
        return "text_encoder" in json.loads(index.read_text())
    except json.JSONDecodeError:
        return False


def default_vae_path() -> str:
    """The shipped digit VAE (the ``vae/`` of pipelines/mini-sd-mnist), from a checkout or an installed wheel."""
    for relative in ("pipelines/mini-sd-mnist/vae", "pipelines/vae-mnist"):
        path = find_shipped(relative)
        if path is not None:
            return str(path)
    raise InputError("no --vae_name_or_path given and the shipped pipelines/mini-sd-mnist/vae was not found: train "
                     "one with training/train_vae.py and pass its output_dir")


def load_text_to_image_pipeline(model: str, scheduler: Optional[str] = None):
    """A ``StableDiffusionPipeline`` from a folder (or Hub id), with a scheduler chosen by name (sd_course/core/schedulers.py)."""
    if scheduler is not None and resolve_scheduler_name(scheduler).startswith("EDM"):
        # Measured (tests/latent/test_text_to_image.py): the stock StableDiffusionPipeline samples the exact distribution
        # with 14 of the 15 compatible schedulers, but not EDM's, whose preconditioning it does not apply.
        raise InputError(f"--scheduler {scheduler}: diffusers' StableDiffusionPipeline does not apply the EDM "
                         "preconditioning, so its samples are wrong; use euler, dpm++ or any other of the 15")
    with quiet_diffusers():
        pipe = StableDiffusionPipeline.from_pretrained(model, safety_checker=None, requires_safety_checker=False)
    if scheduler is not None:
        pipe.scheduler = make_scheduler(scheduler, pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


