"""Where the words land: the mini Stable Diffusion's cross-attention maps, per layer and per sampling step.

    sd-course attention --model pipelines/mini-sd-mnist --prompt "a handwritten digit seven" --output_dir figures/attention

writes:

    attention.png   rows: a few sampling steps (early, middle, late); columns: the prompt's tokens (the start token,
                    each word token, the end token, and all padding summed into one "pad" column), each cell the map
                    of one token over the latent positions (averaged over the cross-attention layers and the heads),
                    upsampled to the image and outlined with the final digit; last column: the final image
    per_layer.png   per cross-attention layer, the share of attention mass on each token (mean over positions and
                    steps); and the share of each token along the sampling steps (mean over layers)
    attention.json  the shares per layer, step and token, the tokens, the prompt, the sampler

The math. A cross-attention layer of the U-Net (``attn2`` of each transformer block; ``attn1`` is self-attention over
the latent positions) computes, for the feature map flattened to N = h * w positions and the L token vectors of the
text encoder,

    Q = W_q f        (N, d)   one query per latent position: what this place of the image is looking for
    K = W_k c, V = W_v c  (L, d)   one key and one value per text token (c = CLIPTextModel(prompt), padded to L)
    A = softmax(Q K^T / sqrt(d))   (N, L)   row n: how position n spreads its attention over the L tokens (sums to 1)
    out = A V                      each position mixes in the values of the tokens it attends to

per head (the U-Net's 8 heads, d = 16 each); the maps here are A averaged over heads: column k of A, reshaped to
h x w, is "where token k is read". Hertz et al. 2022 (Prompt-to-Prompt) showed that in Stable Diffusion these maps
already lay out the picture in the first steps, and that editing them edits the image. The share of a token is the
mean over positions of its column: the fraction of all attention that goes to it (the shares of a layer sum to 1).

How it is recorded: diffusers runs every attention layer through a swappable *attention processor*
(``unet.set_attn_processor``); :class:`RecordingAttnProcessor` wraps the one in place on each ``attn2`` layer, lets it
compute the layer's output unchanged (so the image is bit for bit the image without recording: tested), and besides
computes A explicitly with ``attn.get_attention_scores``, as diffusers' plain ``AttnProcessor`` does. Only the
conditional half of the classifier-free-guidance batch is kept (diffusers stacks [unconditional, conditional]).

In the shipped model the caption enters only at the 4x4 level (six cross-attention layers, 16 positions, 77 tokens:
sd_course/latent/text_to_image.py), so each map has 16 cells. CLIP's text encoder is causal: the end token and
every padding token after it have read the whole prompt, so they are summaries of it, not blanks; the padding is
summed into one column whatever the tokenizer's length (77 here as in Stable Diffusion; 16 in
pipelines/mini-sd-mnist-epoch10).
Cmd: sd-course attention --model pipelines/mini-sd-mnist --prompt "a handwritten digit seven" --output_dir docs/figures/attention
Fig: docs/figures/attention/attention.png
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from sd_course.core.device import resolve_device
from sd_course.core.errors import InputError
from sd_course.core.images import check_output_dir
from sd_course.core.plots import evenly_spaced
from sd_course.core.provenance import relative_to_root, write_result
from sd_course.core.schedulers import check_num_inference_steps
from sd_course.core.shipped import find_shipped
from sd_course.latent.guidance import check_guidance_and_size, recommended_guidance
from sd_course.latent.text import check_prompt, names_a_digit
from sd_course.latent.text_to_image import is_text_to_image, load_text_to_image_pipeline

CROSS_ATTENTION = "attn2"  # diffusers' BasicTransformerBlock: attn1 = self-attention, attn2 = cross-attention
SHIPPED = "pipelines/mini-sd-mnist"


# ----------------------------------------------------------------------------------------------------------------
# 1. Recording: an attention processor that computes A = softmax(Q K^T / sqrt(d)) beside the layer's own output
# ----------------------------------------------------------------------------------------------------------------


def attention_probabilities(attn, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor,
                            attention_mask: Optional[torch.Tensor] = None,
                            temb: Optional[torch.Tensor] = None) -> torch.Tensor:
    """A = softmax(Q K^T / sqrt(d)) of one diffusers ``Attention`` layer, averaged over its heads: (B, N, L).

    The steps of diffusers' ``AttnProcessor`` up to ``attn.get_attention_scores`` (the values are not needed)."""
    if attn.spatial_norm is not None:
        hidden_states = attn.spatial_norm(hidden_states, temb)
    if hidden_states.ndim == 4:  # (B, C, h, w) -> (B, h*w, C): one query per position
        b, c, h, w = hidden_states.shape
        hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
    batch_size, length, _ = encoder_hidden_states.shape
    attention_mask = attn.prepare_attention_mask(attention_mask, length, batch_size)
    if attn.group_norm is not None:
        hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
    if getattr(attn, "norm_q", None) is not None or getattr(attn, "norm_k", None) is not None:
        raise InputError("this U-Net normalises queries and keys (qk_norm); the attention maps of such layers are "
                         "not computed here (Stable Diffusion's U-Net has none)")
    query = attn.to_q(hidden_states)  # Q = W_q f: from the U-Net's feature map
    if attn.norm_cross:
        encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
    key = attn.to_k(encoder_hidden_states)  # K = W_k c: from the text tokens
    query, key = attn.head_to_batch_dim(query), attn.head_to_batch_dim(key)  # (B * heads, N or L, d)
    probs = attn.get_attention_scores(query, key, attention_mask)  # softmax(Q K^T * attn.scale), scale = 1/sqrt(d)
    return probs.reshape(batch_size, attn.heads, probs.shape[1], probs.shape[2]).mean(dim=1)


class AttentionRecorder:
    """What the processors write into: one entry per U-Net call (its timestep and, per layer, a (N, L) map)."""

    def __init__(self, layers: list[str], keep_last: int = 1):
        self.layers, self.keep_last = layers, keep_last
        self.calls: list[dict] = []
        self.latent_hw: Optional[tuple[int, int]] = None

    def begin_call(self, module, args, kwargs):
        """A forward pre-hook of the U-Net: a new model call at timestep t, on latents of size (h, w)."""
        sample = args[0] if args else kwargs["sample"]
        t = args[1] if len(args) > 1 else kwargs["timestep"]
        t = float(torch.as_tensor(t).flatten()[0])
        self.latent_hw = tuple(sample.shape[-2:])
        self.calls.append({"t": t, "maps": {}})

    def add(self, layer: str, probs: torch.Tensor) -> None:
        """``probs`` (B, N, L) of one layer; the last ``keep_last`` rows are the conditional half of the CFG batch."""
        if not self.calls:  # the processor was called outside a U-Net forward (a direct call): its own entry
            self.calls.append({"t": float("nan"), "maps": {}})
        self.calls[-1]["maps"][layer] = probs[-self.keep_last:].mean(dim=0).detach().float().cpu()

    def stacked(self) -> dict[str, torch.Tensor]:
        """Per layer, the maps of every call: (calls, N, L)."""
        return {layer: torch.stack([call["maps"][layer] for call in self.calls]) for layer in self.layers}

    @property
    def timesteps(self) -> list[float]:
        return [call["t"] for call in self.calls]


class RecordingAttnProcessor:
    """Wraps the processor a cross-attention layer had: returns exactly what it returns, and records A."""

    def __init__(self, inner, layer: str, recorder: AttentionRecorder):
        self.inner, self.layer, self.recorder = inner, layer, recorder

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        out = self.inner(attn, hidden_states, encoder_hidden_states=encoder_hidden_states,
                         attention_mask=attention_mask, temb=temb, **kwargs)
        if encoder_hidden_states is not None:  # a cross-attention call (keys and values from the text)
            with torch.no_grad():
                self.recorder.add(self.layer, attention_probabilities(attn, hidden_states, encoder_hidden_states,
                                                                      attention_mask, temb))
        return out


def cross_attention_layers(unet) -> list[str]:
    """The names of the U-Net's cross-attention layers, in the order the forward pass runs them (down blocks, the
    middle block, up blocks; ``unet.attn_processors`` lists the middle block last)."""
    names = [name.removesuffix(".processor") for name in unet.attn_processors
             if name.removesuffix(".processor").endswith(CROSS_ATTENTION)]
    stage = {"down_blocks": 0, "mid_block": 1, "up_blocks": 2}
    return sorted(names, key=lambda n: (stage.get(n.split(".")[0], 3),
                                        [int(p) if p.isdigit() else 0 for p in n.split(".")[1:]]))


@contextmanager
def recording_cross_attention(unet, keep_last: int = 1):
    """``with recording_cross_attention(pipe.unet) as recorder: pipe(prompt)``: every ``attn2`` layer records its
    maps into ``recorder``; the processors the U-Net had are put back afterwards."""
    originals = dict(unet.attn_processors)
    layers = cross_attention_layers(unet)
    if not layers:
        raise InputError("this U-Net has no cross-attention layers (attn2): it does not read a text, so there are no "
                         "attention maps to show")
    recorder = AttentionRecorder(layers, keep_last)
    wrapped = {name: RecordingAttnProcessor(p, name.removesuffix(".processor"), recorder)
               if name.removesuffix(".processor") in layers else p for name, p in originals.items()}
    unet.set_attn_processor(wrapped)  # (diffusers pops from the dict it is given: a copy each time)
    hook = unet.register_forward_pre_hook(recorder.begin_call, with_kwargs=True)
    try:
        yield recorder
    finally:
        hook.remove()
        unet.set_attn_processor(dict(originals))


@torch.no_grad()
def record_attention(pipe, prompt: str, num_inference_steps: int = 25, guidance_scale: float = 2.0, seed: int = 0):
    """Run the stock ``StableDiffusionPipeline`` once and record its cross-attention: (recorder, image (C, H, W) in
    [0, 1])."""
    with recording_cross_attention(pipe.unet, keep_last=1) as recorder:
        image = pipe(prompt, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                     generator=torch.Generator().manual_seed(seed), output_type="pt").images[0]
    return recorder, image.float().cpu()


# ----------------------------------------------------------------------------------------------------------------
# 2. Reading the maps: tokens, layer resolutions, shares
# ----------------------------------------------------------------------------------------------------------------


def prompt_tokens(tokenizer, prompt: str) -> dict:
    """The token ids the pipeline feeds the text encoder (padded to ``model_max_length``, as ``encode_prompt``), the
    number of real ones (start, words, end; at most the length) and a readable label for each real one."""
    length = tokenizer.model_max_length
    ids = tokenizer(prompt, padding="max_length", max_length=length, truncation=True).input_ids
    real = len(tokenizer(prompt, max_length=length, truncation=True).input_ids)  # the same, without the padding
    labels = []
    for k, token_id in enumerate(ids[:real]):
        if k == 0 and token_id == tokenizer.bos_token_id:
            labels.append("<start>")
        elif k == real - 1 and token_id == tokenizer.eos_token_id:
            labels.append("<end>")
        else:
            labels.append(tokenizer.decode([token_id]).strip() or tokenizer.convert_ids_to_tokens(token_id))
    return {"ids": list(ids), "num_real": real, "labels": labels, "length": length}


def to_columns(maps: torch.Tensor, num_real: int) -> torch.Tensor:
    """(..., L) over all token positions -> (..., num_real + 1): the real tokens, then all padding summed ("pad")."""
    return torch.cat([maps[..., :num_real], maps[..., num_real:].sum(dim=-1, keepdim=True)], dim=-1)


def layer_resolution(num_positions: int, latent_hw: tuple[int, int]) -> tuple[int, int]:
    """The (h, w) of a layer with ``num_positions`` queries in a U-Net on latents of ``latent_hw``: the latents
    halved k times (each down block's Downsample2D), for the k that gives that many positions."""
    h, w = latent_hw
    for k in range(8):
        hk, wk = math.ceil(h / 2 ** k), math.ceil(w / 2 ** k)
        if hk * wk == num_positions:
            return hk, wk
    raise ValueError(f"{num_positions} query positions are no halving of the {h}x{w} latents")


def short_name(layer: str) -> str:
    """down_blocks.1.attentions.0.transformer_blocks.0.attn2 -> down1.0; mid_block.attentions.0... -> mid.0;
    up_blocks.0.attentions.2... -> up0.2 (block . transformer within it)"""
    parts = layer.split(".")
    if parts[0] == "mid_block":
        return f"mid.{parts[2]}"
    return f"{parts[0].split('_')[0]}{parts[1]}.{parts[3]}"


def digit_column(labels: list[str], shares: torch.Tensor) -> int:
    """The column of the word that names the digit ("seven", "7"), else the word token with the largest share."""
    for k, label in enumerate(labels):
        if not label.startswith("<") and names_a_digit(label.lower()):
            return k
    words = [k for k, label in enumerate(labels) if not label.startswith("<")]
    return max(words, key=lambda k: float(shares[k])) if words else 0


def attention_numbers(recorder: AttentionRecorder, tokens: dict) -> dict:
    """The shares: per layer, per call and column, the mean over positions of A (each row of shares sums to 1)."""
    stacked = recorder.stacked()
    layers = []
    for name, maps in stacked.items():  # maps: (calls, N, L)
        shares = to_columns(maps, tokens["num_real"]).mean(dim=1)  # (calls, columns)
        h, w = layer_resolution(maps.shape[1], recorder.latent_hw)
        layers.append({"name": name, "short": short_name(name), "resolution": [h, w], "query_positions": h * w,
                       "share_per_step": [[round(float(v), 5) for v in row] for row in shares],
                       "share": [round(float(v), 5) for v in shares.mean(dim=0)]})
    per_step = torch.tensor([layer["share_per_step"] for layer in layers]).mean(dim=0)  # (calls, columns)
    return {"layers": layers, "share_per_step": [[round(float(v), 5) for v in row] for row in per_step],
            "share": [round(float(v), 5) for v in per_step.mean(dim=0)]}


@torch.no_grad()
def token_vector_similarity(pipe, tokens: dict) -> list[float]:
    """Cosine of each real token's text-encoder vector (a key/value source of cross-attention) with the start
    token's: near 1 for every word, and the words' maps cannot differ from the start token's."""
    ids = torch.tensor([tokens["ids"]], device=pipe.text_encoder.device)
    vectors = pipe.text_encoder(ids)[0][0, :tokens["num_real"]].float()
    return [round(float(v), 4) for v in F.cosine_similarity(vectors, vectors[:1], dim=-1)]


def summary_line(numbers: dict) -> str:
    """One line: the digit word's share of the attention at the first and last step, and the start token's."""
    columns, per_step, ts = numbers["columns"], numbers["share_per_step"], numbers["timesteps"]
    k = numbers["digit_column"]
    first, last = per_step[0], per_step[-1]
    parts = [f"{columns[k]!r}: {100 * first[k]:.1f}% at the first step (t={ts[0]:.0f}) -> {100 * last[k]:.1f}% at "
             f"the last (t={ts[-1]:.0f})"]
    if columns[0] == "<start>" and k != 0:
        parts.append(f"<start>: {100 * first[0]:.1f}% -> {100 * last[0]:.1f}%")
    if numbers["num_padding"]:
        parts.append(f"pad ({numbers['num_padding']} tokens): {100 * first[-1]:.1f}% -> {100 * last[-1]:.1f}%")
    return "cross-attention share of " + "; ".join(parts) + " (mean over layers and positions)"


# ----------------------------------------------------------------------------------------------------------------
# 3. Figures
# ----------------------------------------------------------------------------------------------------------------


def token_maps(stacked: dict[str, torch.Tensor], latent_hw: tuple[int, int], num_real: int,
               call: int) -> torch.Tensor:
    """(columns, h, w) at the resolution of the finest cross-attention layer: the maps of one call, each layer's
    upsampled (nearest: its cells as they are) and then averaged over the layers."""
    sizes = {name: layer_resolution(maps.shape[1], latent_hw) for name, maps in stacked.items()}
    target = max(sizes.values(), key=lambda hw: hw[0] * hw[1])
    out = []
    for name, maps in stacked.items():
        grid = to_columns(maps[call], num_real).T.reshape(-1, 1, *sizes[name])  # (columns, 1, h, w)
        out.append(F.interpolate(grid, size=target, mode="nearest")[:, 0])
    return torch.stack(out).mean(dim=0)


def attention_figure(stacked: dict[str, torch.Tensor], latent_hw, tokens: dict, columns: list[str],
                     timesteps: list[float], rows: list[int], image: torch.Tensor, shares_per_step: list, prompt: str):
    """Rows: the chosen model calls; columns: the tokens (and pad), each map on its own colour scale with the token's
    share written above it; the final image outlined on every map; the final image last."""
    gray = image.mean(dim=0)  # (H, W) in [0, 1]
    size = tuple(gray.shape)
    n_cols = len(columns) + 1
    fig = Figure(figsize=(1.35 * n_cols + 0.4, 1.45 * len(rows) + 1.0), dpi=100, layout="constrained")
    axes = fig.subplots(len(rows), n_cols, squeeze=False)
    for r, call in enumerate(rows):
        maps = token_maps(stacked, latent_hw, tokens["num_real"], call)
        smooth = F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
        for c, label in enumerate(columns):
            ax = axes[r, c]
            ax.imshow(smooth[c].numpy(), cmap="magma", vmin=0, vmax=max(float(smooth[c].max()), 1e-8))
            ax.contour(gray.numpy(), levels=[0.5], colors="#00b4ff", linewidths=0.7)
            ax.set_title((f"{label}\n" if r == 0 else "") + f"{100 * shares_per_step[call][c]:.1f}%", fontsize=8)
        axes[r, 0].set_ylabel(f"step {call + 1}/{len(timesteps)}\nt={timesteps[call]:.0f}", fontsize=8)
        axes[r, -1].imshow(gray.numpy(), cmap="gray", vmin=0, vmax=1)
        if r == 0:
            axes[r, -1].set_title("final image", fontsize=8)
        else:
            axes[r, -1].set_visible(False)
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle(f"Cross-attention of \"{prompt}\": where each token is read (mean over {len(stacked)} layers and the "
                 "heads; each map from 0 (dark) to its own maximum (bright):\nflat = bright everywhere; the % is the "
                 "token's share of all attention; blue: outline of the final image)", fontsize=9)
    return fig


def per_layer_figure(numbers: dict):
    """Left: per layer, the share of attention on each token (stacked bars); right: the shares along the steps."""
    columns, layers = numbers["columns"], numbers["layers"]
    colors = [f"C{k % 10}" for k in range(len(columns))]
    fig = Figure(figsize=(12, 0.45 * len(layers) + 2.6), dpi=100, layout="constrained")
    ax_bars, ax_steps = fig.subplots(1, 2, width_ratios=(1.2, 1))
    names = [f"{layer['short']} ({layer['resolution'][0]}x{layer['resolution'][1]})" for layer in layers]
    names.append("all layers")
    rows = [layer["share"] for layer in layers] + [numbers["share"]]
    y = list(range(len(rows)))[::-1]
    left = [0.0] * len(rows)
    for k, label in enumerate(columns):
        widths = [row[k] for row in rows]
        ax_bars.barh(y, widths, left=left, color=colors[k], label=label, edgecolor="white", linewidth=0.5)
        for yi, x0, wi in zip(y, left, widths):
            if wi > 0.06:
                ax_bars.text(x0 + wi / 2, yi, f"{100 * wi:.0f}", ha="center", va="center", fontsize=7, color="white")
        left = [a + b for a, b in zip(left, widths)]
    ax_bars.set_yticks(y, names, fontsize=8)
    ax_bars.set(xlim=(0, 1), xlabel="share of the attention mass (mean over positions and steps)",
                title="per cross-attention layer (down / mid / up block . transformer)")
    fig.legend(*ax_bars.get_legend_handles_labels(), loc="outside lower center", ncols=min(len(columns), 8),
               fontsize=8)
    steps = list(range(1, len(numbers["timesteps"]) + 1))
    per_step = torch.tensor(numbers["share_per_step"])
    for k, label in enumerate(columns):
        ax_steps.plot(steps, per_step[:, k].numpy(), color=colors[k], label=label,
                      lw=2.2 if k == numbers["digit_column"] else 1.2)
    ticks = evenly_spaced(len(steps), 6)
    ax_steps.set_xticks([steps[i] for i in ticks], [f"{i + 1}\nt={numbers['timesteps'][i]:.0f}" for i in ticks],
                        fontsize=8)
    ax_steps.set(xlabel="sampling step (noise -> image)", ylabel="share (mean over layers and positions)",
                 title="along the sampling steps", ylim=(0, None))
    ax_steps.grid(alpha=0.3)
    fig.suptitle(f"Cross-attention of \"{numbers['prompt']}\", {numbers['scheduler']} {len(steps)} steps, guidance "
                 f"{numbers['guidance_scale']:g}, seed {numbers['seed']}", fontsize=10)
    return fig


# ----------------------------------------------------------------------------------------------------------------
# 4. The lesson in one call (`sd-course attention`)
# ----------------------------------------------------------------------------------------------------------------


def resolve_model(model: Optional[str]) -> str:
    """A text-to-image pipeline folder (default: the shipped one), else an InputError that says what it is."""
    if model is None:
        found = find_shipped(SHIPPED)
        if found is None:
            raise InputError(f"no --model given and the shipped {SHIPPED} was not found: pass a text-to-image "
                             "pipeline folder (training/train_text_to_image.py writes one)")
        return str(found)
    path = Path(model).expanduser()
    if not path.is_dir():
        raise InputError(f"--model {model!r} is not a folder: give a text-to-image pipeline folder such as {SHIPPED}")
    if not is_text_to_image(path):
        if (path / "model_index.json").is_file():
            raise InputError(f"--model {model!r} is a pipeline without a text encoder (a pixel model): it reads no "
                             f"prompt and has no cross-attention; use a text-to-image pipeline such as {SHIPPED}")
        raise InputError(f"--model {model!r} has no model_index.json: it is not a pipeline folder; use a "
                         f"text-to-image pipeline such as {SHIPPED}")
    return str(path)


def write_attention_lesson(model: Optional[str] = None, prompt: str = "a handwritten digit seven",
                           output_dir: str = "figures/attention", num_inference_steps: int = 25,
                           guidance_scale: Optional[float] = None, seed: int = 0, scheduler: Optional[str] = "ddim",
                           num_rows: int = 4, device: Optional[str] = "auto") -> dict:
    """Sample ``prompt`` once, recording the cross-attention; write attention.png, per_layer.png and attention.json
    into ``output_dir`` (only those three files are written; nothing is deleted). Returns the numbers.
    ``guidance_scale``: default, the one the model's card recommends (``recommended_guidance``)."""
    if not (prompt or "").strip():
        raise InputError('--prompt is empty: the maps show how the words of a prompt are read; give one, e.g. '
                         '--prompt "a handwritten digit seven"')
    if num_rows <= 0:
        raise InputError(f"--num_rows must be positive, got {num_rows}")
    model = resolve_model(model)
    pipe = load_text_to_image_pipeline(model, scheduler)
    guidance_scale = guidance_scale if guidance_scale is not None else recommended_guidance(model)
    check_guidance_and_size(pipe, guidance_scale)
    steps = check_num_inference_steps(pipe.scheduler, num_inference_steps)
    check_prompt(pipe.tokenizer, prompt)
    out = check_output_dir(output_dir)
    pipe = pipe.to(resolve_device(device))

    recorder, image = record_attention(pipe, prompt, steps, guidance_scale, seed)
    tokens = prompt_tokens(pipe.tokenizer, prompt)
    columns = tokens["labels"] + ["pad"]
    numbers = {"prompt": prompt, "model": relative_to_root(model), "scheduler": type(pipe.scheduler).__name__,
               "num_inference_steps": steps, "guidance_scale": guidance_scale, "seed": seed,
               "tokens": tokens["labels"], "token_ids": tokens["ids"], "tokenizer_length": tokens["length"],
               "num_padding": tokens["length"] - tokens["num_real"], "columns": columns,
               "timesteps": recorder.timesteps, "latent_size": list(recorder.latent_hw),
               "note": "share = mean over the layer's query positions of softmax(QK^T/sqrt(d)) averaged over heads, "
                       "conditional half of the guidance batch; 'pad' sums every padding token; share_per_step and "
                       "share without a layer are means over the layers",
               **attention_numbers(recorder, tokens)}
    numbers["text_encoder_cosine_with_start"] = token_vector_similarity(pipe, tokens)
    numbers["digit_column"] = digit_column(columns[:-1], numbers["share"])
    numbers["summary"] = summary_line(numbers)

    rows = evenly_spaced(len(recorder.calls), num_rows)
    fig = attention_figure(recorder.stacked(), recorder.latent_hw, tokens, columns, recorder.timesteps, rows, image,
                           numbers["share_per_step"], prompt)
    fig.savefig(out / "attention.png", dpi=fig.dpi, facecolor="white")
    fig = per_layer_figure(numbers)
    fig.savefig(out / "per_layer.png", dpi=fig.dpi, facecolor="white")
    folder = Path(model)  # the weights that made the maps: the U-Net and the text encoder
    inputs = [folder / part for part in ("unet", "text_encoder") if (folder / part).is_dir()]
    write_result(out / "attention.json", numbers, inputs=inputs, device=pipe.device)
    return numbers
