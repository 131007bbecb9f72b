"""The U-Net's anatomy, measured: every block's input and output shape and parameter count, the timestep-embedding
path, and where self- and cross-attention sit, for both shipped U-Nets, from forward hooks on one real forward pass.

    sd-course anatomy --output_dir docs/figures/anatomy

runs the U-Net of ``pipelines/ddpm-mnist`` (the pixel ``UNet2DModel``, ``--pixel_model``) and that of
``pipelines/mini-sd-mnist`` (the mini Stable Diffusion's ``UNet2DConditionModel``, ``--text_model``, reading the
``--prompt`` through the pipeline's own text encoder) once each, and writes:

    anatomy.png    one U per model: the blocks in the order the forward pass runs them, each drawn at the resolution
                   its ResNets work at (down the left, the middle block at the bottom, up the right), with its input
                   -> output shape, its parameters and its attention layers; dashed: every skip connection, from the
                   module that keeps it to the up block that reads it, with its shape; beside it, the
                   timestep-embedding path with its shapes and parameters
    anatomy.json   per model: every block and its parts (resnets, attentions, down/upsamplers) with the shapes the
                   hooks saw and the parameter counts, the skips, the time-embedding path, each attention layer
                   (self or cross, query positions, key positions or tokens, heads x head width), with the result's
                   provenance (sd_course/core/provenance.py)
    (stdout)       the same as a table

What the hooks measure. ``module.register_forward_hook`` calls a function after a module's forward with its actual
inputs and outputs, so the shapes are the ones the model computed, not ones derived from the config (the tests check
them against the config and against calling each block on its own). An attention layer's query and key counts are
the shapes of what its ``to_q`` and ``to_k`` projections returned: (batch, queries, width) and (batch, keys, width).
A U-Net for x_t of shape (C, H, W), in diffusers' names:

    conv_in                 C -> c_0 channels at H x W; its output is the first skip
    down block i            ResNets at c_i channels, then a stride-2 conv halves H and W (not the last block); every
                            ResNet output and the downsampled map is kept as a skip
    mid block               ResNet, attention, ResNet at the coarsest level
    up block j              each ResNet reads concat(h, the last skip kept) (so its input has more channels than its
                            output), then an upsampler doubles H and W (not the last block)
    conv_norm_out, conv_out GroupNorm, SiLU, c_0 -> C channels: the prediction, the shape of x_t
    time_proj, time_embedding  t -> sinusoidal features (no parameters) -> MLP -> e(t); every ResNet's own
                            ``time_emb_proj`` maps e(t) to its channels

In the mini-SD every ``Transformer2DModel`` holds ``attn1`` (self-attention over the latent positions) and ``attn2``
(cross-attention: queries from the positions, keys and values from the tokens of the text encoder); ``sd-course
attention`` draws the maps of those ``attn2`` layers.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import torch
from diffusers import UNet2DConditionModel, UNet2DModel
from diffusers.models.attention_processor import Attention
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
from transformers import CLIPTextModel, CLIPTokenizer
from transformers.utils import logging as transformers_logging

from sd_course.core.device import resolve_device
from sd_course.core.errors import InputError
from sd_course.core.images import check_output_dir
from sd_course.core.provenance import relative_to_root, write_result
from sd_course.core.schedulers import quiet_diffusers
from sd_course.core.shipped import find_shipped
from sd_course.latent.text import tokenize

PIXEL_MODEL = "pipelines/ddpm-mnist"
TEXT_MODEL = "pipelines/mini-sd-mnist"
PROMPT = "a handwritten digit seven"
UNET_CLASSES = {"UNet2DModel": UNet2DModel, "UNet2DConditionModel": UNet2DConditionModel}
PART_LISTS = ("resnets", "attentions", "downsamplers", "upsamplers")  # what a diffusers U-Net block is made of
BLOCK_LISTS = ("down_blocks", "up_blocks")


# ----------------------------------------------------------------------------------------------------------------
# 1. Loading a U-Net (a pipeline folder or its unet/ folder) and the inputs of one forward pass
# ----------------------------------------------------------------------------------------------------------------


def unet_folder(model: str, flag: str = "--model") -> Path:
    """The folder holding the U-Net's config.json: ``model/unet`` or ``model`` itself; InputError otherwise."""
    path = Path(model).expanduser()
    if not path.is_dir():
        raise InputError(f"{flag} {model!r} is not a folder: give a pipeline folder (e.g. {PIXEL_MODEL} or "
                         f"{TEXT_MODEL}) or its unet/ folder")
    for folder in (path / "unet", path):
        if (folder / "config.json").is_file():
            return folder
    raise InputError(f"{flag} {model!r} has neither unet/config.json nor config.json: it holds no U-Net")


def unet_class_name(folder: Path) -> str:
    try:
        return str(json.loads((folder / "config.json").read_text()).get("_class_name"))
    except json.JSONDecodeError as e:
        raise InputError(f"{folder / 'config.json'} is not valid JSON ({e})") from e


def check_model(model: str, flag: str, expected: str) -> Path:
    """The U-Net folder of ``model``, which must hold a U-Net of class ``expected``; InputError otherwise."""
    folder = unet_folder(model, flag)
    found = unet_class_name(folder)
    if found != expected:
        other = {"UNet2DModel": "--pixel_model", "UNet2DConditionModel": "--text_model"}.get(found)
        raise InputError(f"{flag} {model!r} holds a {found}, not a {expected}"
                         + (f": give it as {other}" if other else ""))
    return folder


def load_unet(folder: Path):
    """The U-Net of ``folder`` in eval mode: a ``UNet2DModel`` or a ``UNet2DConditionModel``, as its config says."""
    with quiet_diffusers():
        return UNET_CLASSES[unet_class_name(folder)].from_pretrained(str(folder)).eval()


@contextmanager
def quiet_transformers():
    """No "Loading weights" progress bar from transformers inside the block."""
    enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            transformers_logging.enable_progress_bar()


@torch.no_grad()
def text_context(unet, folder: Path, prompt: str, seed: int = 0) -> tuple[torch.Tensor, dict]:
    """The ``encoder_hidden_states`` a conditional U-Net reads: the prompt through the text encoder of the pipeline
    the U-Net belongs to (``../text_encoder``, ``../tokenizer``), padded to the tokenizer's length as the pipeline
    pads it; else N(0, I) tokens (77, as Stable Diffusion)."""
    root = folder.parent
    if (root / "text_encoder" / "config.json").is_file() and (root / "tokenizer").is_dir():
        with quiet_transformers():
            tokenizer = CLIPTokenizer.from_pretrained(str(root / "tokenizer"))
            text_encoder = CLIPTextModel.from_pretrained(str(root / "text_encoder")).eval()
        ids = tokenize(tokenizer, [prompt])
        real = len(tokenizer(prompt, max_length=tokenizer.model_max_length, truncation=True).input_ids)
        context = text_encoder(ids)[0]
        return context, {"source": f"{root.name}/text_encoder", "prompt": prompt, "num_tokens": int(ids.shape[1]),
                         "num_prompt_tokens": real, "width": int(context.shape[-1])}
    width = unet.config.cross_attention_dim
    context = torch.randn(1, 77, width, generator=torch.Generator().manual_seed(seed))
    return context, {"source": "random N(0, I) tokens: no text encoder beside the U-Net", "prompt": None,
                     "num_tokens": 77, "num_prompt_tokens": None, "width": width}


def forward_inputs(unet, folder: Path, timestep: int = 500, prompt: str = PROMPT,
                   seed: int = 0) -> tuple[dict, dict]:
    """The keyword arguments of one forward pass (x_t ~ N(0, I) of the model's size, batch 1, at ``timestep``) and a
    description of them. Shapes and parameter counts do not depend on the values fed in."""
    size = unet.config.sample_size
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    sample = torch.randn(1, unet.config.in_channels, h, w, generator=torch.Generator().manual_seed(seed))
    kwargs = {"sample": sample, "timestep": torch.tensor([timestep])}
    described = {"sample": list(sample.shape), "timestep": timestep}
    if isinstance(unet, UNet2DConditionModel):
        context, info = text_context(unet, folder, prompt, seed)
        kwargs["encoder_hidden_states"] = context
        described["encoder_hidden_states"] = list(context.shape)
        described["context"] = info
    return kwargs, described


# ----------------------------------------------------------------------------------------------------------------
# 2. The hooks: what each module was given and what it returned
# ----------------------------------------------------------------------------------------------------------------


def shape_of(value) -> Optional[list[int]]:
    """The shape of a module's main tensor: a tensor, the first of a tuple (a down block returns (h, skips)), or the
    ``.sample`` of a diffusers output."""
    if isinstance(value, torch.Tensor):
        return list(value.shape)
    if isinstance(value, (tuple, list)) and value:
        return shape_of(value[0])
    if hasattr(value, "sample"):
        return shape_of(value.sample)
    return None


def num_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def argument(args: tuple, kwargs: dict, name: str, position: int):
    """A forward argument, whether the caller passed it by position or by name (diffusers does both)."""
    if name in kwargs:
        return kwargs[name]
    return args[position] if len(args) > position else None


def is_block(name: str) -> bool:
    parts = name.split(".")
    return (len(parts) == 2 and parts[0] in BLOCK_LISTS) or name == "mid_block"


def is_part(name: str) -> bool:
    """down_blocks.0.resnets.1, mid_block.attentions.0, ...: one part of a block."""
    parts = name.split(".")
    return (parts[0] in BLOCK_LISTS and len(parts) == 4 and parts[2] in PART_LISTS) or (
        parts[0] == "mid_block" and len(parts) == 3 and parts[1] in PART_LISTS)


def watched_modules(unet) -> dict[str, torch.nn.Module]:
    """The modules the anatomy is made of, by name: the top-level parts, each block and its parts, every ResNet's
    ``time_emb_proj``, every ``Attention`` layer and its ``to_q`` and ``to_k``."""
    watched = {}
    attention = {name for name, module in unet.named_modules() if isinstance(module, Attention)}
    for name, module in unet.named_modules():
        top = name and "." not in name and not isinstance(module, torch.nn.ModuleList)
        projection = name.rpartition(".")[0] in attention and name.rpartition(".")[2] in ("to_q", "to_k")
        if top or is_block(name) or is_part(name) or name.endswith("time_emb_proj") or name in attention or projection:
            watched[name] = module
    return watched


class AnatomyRecorder:
    """Forward hooks on :func:`watched_modules`: the first call of each, with its input and output shapes."""

    def __init__(self, unet):
        self.records: dict[str, dict] = {}
        self.handles = [module.register_forward_hook(self._hook(name), with_kwargs=True)
                        for name, module in watched_modules(unet).items()]

    def _hook(self, name: str):
        def hook(module, args, kwargs, output):
            if name in self.records:
                return
            hidden = argument(args, kwargs, "hidden_states", 0)
            if hidden is None:
                hidden = argument(args, kwargs, "sample", 0)
            record = {"class": type(module).__name__, "in": shape_of(hidden), "out": shape_of(output),
                      "params": num_parameters(module)}
            if name.startswith("up_blocks.") and is_block(name):
                record["skips_in"] = [list(s.shape) for s in argument(args, kwargs, "res_hidden_states_tuple", 1)]
            if name.startswith("down_blocks.") and is_block(name):
                record["skips_out"] = [list(s.shape) for s in output[1]]
            if isinstance(module, Attention):
                record["cross"] = argument(args, kwargs, "encoder_hidden_states", 1) is not None
                record["heads"] = int(module.heads)
            self.records[name] = record

        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


@torch.no_grad()
def record_forward(unet, inputs: dict) -> tuple[dict[str, dict], torch.Tensor]:
    """Run the U-Net once with the hooks on: (records by module name, the prediction)."""
    recorder = AnatomyRecorder(unet)
    try:
        out = unet(**inputs).sample
    finally:
        recorder.remove()
    return recorder.records, out


# ----------------------------------------------------------------------------------------------------------------
# 3. From the records to the anatomy: blocks, skips, the time path, the attention layers
# ----------------------------------------------------------------------------------------------------------------


def chw(shape: Optional[list[int]]) -> str:
    """[1, 32, 28, 28] -> "32x28x28" (the batch dimension dropped); [1] -> "(1,)"."""
    if shape is None:
        return "-"
    return "x".join(str(s) for s in shape[1:]) if len(shape) > 1 else f"({shape[0]},)"


def block_names(unet) -> list[str]:
    """down_blocks.0, ..., mid_block, up_blocks.0, ...: the order the forward pass runs them."""
    names = [f"down_blocks.{i}" for i in range(len(unet.down_blocks))]
    names += ["mid_block"] if unet.mid_block is not None else []
    return names + [f"up_blocks.{i}" for i in range(len(unet.up_blocks))]


def block_parts(name: str, records: dict) -> list[str]:
    return [n for n in records if n.startswith(name + ".") and is_part(n)]


def attention_layers(records: dict) -> list[dict]:
    """Each attention layer, measured: self or cross, queries and keys (what ``to_q`` and ``to_k`` returned), heads,
    the width of a head, and the resolution of the feature map its queries come from."""
    layers = []
    for name, r in records.items():
        if "cross" not in r:
            continue
        q, k = records[name + ".to_q"]["out"], records[name + ".to_k"]["out"]
        parts = name.split(".")
        maps = [records[".".join(parts[:i])]["in"] for i in range(len(parts), 0, -1) if ".".join(parts[:i]) in records]
        resolution = next((s[2:] for s in maps if s is not None and len(s) == 4), None)
        layers.append({"name": name, "kind": "cross" if r["cross"] else "self", "resolution": resolution,
                       "query_positions": int(q[1]), "keys": int(k[1]), "heads": r["heads"],
                       "head_dim": int(k[2]) // r["heads"], "params": r["params"]})
    return layers


def skip_connections(unet, records: dict) -> list[dict]:
    """Every skip: the module that kept it (conv_in or a down block), the up block that reads it, its shape. The down
    path pushes conv_in's output and each down block's ``skips_out`` on a stack; each up block pops as many as its
    ResNets read, in reverse (checked against the shapes the up blocks were given)."""
    stack = [("conv_in", records["conv_in"]["out"])]
    for i in range(len(unet.down_blocks)):
        stack += [(f"down_blocks.{i}", s) for s in records[f"down_blocks.{i}"]["skips_out"]]
    skips = []
    for j in range(len(unet.up_blocks)):
        wanted = records[f"up_blocks.{j}"]["skips_in"]
        taken, stack = stack[len(stack) - len(wanted):], stack[:len(stack) - len(wanted)]
        if [s for _, s in taken] != wanted:
            raise RuntimeError(f"up_blocks.{j} read skips {wanted}, the stack held {[s for _, s in taken]}")
        skips += [{"from": source, "to": f"up_blocks.{j}", "shape": shape} for source, shape in reversed(taken)]
    return skips


def time_path(unet, records: dict) -> dict:
    """sinusoid -> MLP -> one projection per ResNet, with the shapes and parameters the hooks saw."""
    proj, emb = unet.time_proj, unet.time_embedding
    projections = [{"resnet": n.removesuffix(".time_emb_proj"), "in": r["in"], "out": r["out"], "params": r["params"]}
                   for n, r in records.items() if n.endswith("time_emb_proj")]
    return {
        "sinusoid": {"in": records["time_proj"]["in"], "out": records["time_proj"]["out"],
                     "num_channels": int(proj.num_channels), "flip_sin_to_cos": bool(proj.flip_sin_to_cos),
                     "downscale_freq_shift": float(proj.downscale_freq_shift), "params": 0},
        "mlp": {"in": records["time_embedding"]["in"], "out": records["time_embedding"]["out"],
                "layers": [f"Linear {emb.linear_1.in_features} -> {emb.linear_1.out_features}", "SiLU",
                           f"Linear {emb.linear_2.in_features} -> {emb.linear_2.out_features}"],
                "params": records["time_embedding"]["params"]},
        "per_resnet": projections,
        "per_resnet_params": sum(p["params"] for p in projections),
        "num_resnets": len(projections),
    }


def sinusoid(timesteps: torch.Tensor, num_channels: int, flip_sin_to_cos: bool = True,
             downscale_freq_shift: float = 0.0, max_period: float = 10000.0) -> torch.Tensor:
    """The sinusoidal features of t written out: w_k = max_period^(-k / (half - shift)), [cos, sin] or [sin, cos]."""
    half = num_channels // 2
    k = torch.arange(half, dtype=torch.float64)
    angles = timesteps.to(torch.float64)[:, None] * max_period ** (-k / (half - downscale_freq_shift))[None]
    pair = (angles.cos(), angles.sin()) if flip_sin_to_cos else (angles.sin(), angles.cos())
    return torch.cat(pair, dim=-1)


def top_level_order(unet) -> tuple[list[str], list[str]]:
    """The top-level modules that run before the blocks (conv_in, time_proj, time_embedding, ...) and after them."""
    before, after, seen_blocks = [], [], False
    for name, module in unet.named_children():
        if name in BLOCK_LISTS or name == "mid_block":
            seen_blocks = True
        elif not isinstance(module, torch.nn.ModuleList):
            (after if seen_blocks else before).append(name)
    return before, after


def anatomy_of(unet, records: dict, described: dict, model: str) -> dict:
    """Everything measured about one U-Net, as JSON-ready numbers."""
    before, after = top_level_order(unet)
    attention = attention_layers(records)
    blocks = []
    for name in block_names(unet):
        parts = [{"name": n, **records[n]} for n in block_parts(name, records)]
        resnets = [p for p in parts if p["name"].split(".")[-2] == "resnets"]
        blocks.append({"name": name, **records[name], "resolution": (resnets[0]["out"] if resnets else
                                                                     records[name]["in"])[2:],
                       "parts": parts, "attention": [a for a in attention if a["name"].startswith(name + ".")]})
    total = num_parameters(unet)
    anatomy = {
        "model": model, "class": type(unet).__name__, "total_params": total,
        "params_by_top_level_module": {n: num_parameters(m) for n, m in unet.named_children()},
        "inputs": described, "output": records["conv_out"]["out"],
        "before_blocks": [{"name": n, **records[n]} for n in before if n in records],
        "blocks": blocks,
        "after_blocks": [{"name": n, **records[n]} for n in after if n in records],
        "skips": skip_connections(unet, records),
        "time_embedding": time_path(unet, records), "attention": attention,
        "num_self_attention": sum(a["kind"] == "self" for a in attention),
        "num_cross_attention": sum(a["kind"] == "cross" for a in attention),
    }
    anatomy["summary"] = summary_line(anatomy)
    return anatomy


def attention_groups(attention: list[dict]) -> dict[tuple, int]:
    """(kind, resolution, queries, keys, heads, head width) -> how many layers."""
    groups: dict[tuple, int] = {}
    for a in attention:
        key = (a["kind"], "x".join(map(str, a["resolution"] or [])), a["query_positions"], a["keys"], a["heads"],
               a["head_dim"])
        groups[key] = groups.get(key, 0) + 1
    return groups


def summary_line(anatomy: dict) -> str:
    said = [f"{n} {kind}-attention layer{'s' if n > 1 else ''} at {res} ({q} positions x {k} "
            f"{'tokens' if kind == 'cross' else 'positions'}, {h} heads of {d})"
            for (kind, res, q, k, h, d), n in attention_groups(anatomy["attention"]).items()]
    return (f"{anatomy['model']}: {anatomy['class']}, {anatomy['total_params']:,} parameters; "
            + ("; ".join(said) if said else "no attention"))


def table(anatomy: dict) -> str:
    """The anatomy as fixed-width text: one line per module in forward order, blocks and their parts indented, the
    attention layers under their parts, then the time path."""
    inputs = anatomy["inputs"]
    lines = [f"{anatomy['model']}  ({anatomy['class']}, {anatomy['total_params']:,} parameters; one forward pass on "
             f"x_t {chw(inputs['sample'])} at t={inputs['timestep']}"
             + (f", context {chw(inputs['encoder_hidden_states'])} from {inputs['context']['source']}"
                if "context" in inputs else "") + ")",
             f"{'module':<36} {'type':<26} {'input':<14} {'output':<14} {'params':>10}"]

    def said(a: dict) -> str:
        return (f"{a['kind']}-attention: {a['query_positions']} queries x {a['keys']} "
                f"{'tokens' if a['kind'] == 'cross' else 'positions'}, {a['heads']} heads x {a['head_dim']}")

    def row(name, r, indent="", extra=""):
        if r.get("skips_in"):
            extra = f"  + skips of {', '.join(str(s[1]) for s in r['skips_in'])} channels"
        if r.get("skips_out"):
            extra = f"  keeps {len(r['skips_out'])} skip{'s' if len(r['skips_out']) > 1 else ''}"
        lines.append(f"{indent + name:<36} {r['class']:<26} {chw(r['in']):<14} {chw(r['out']):<14} "
                     f"{r['params']:>10,}{extra}")

    for r in anatomy["before_blocks"]:
        row(r["name"], r)
    for b in anatomy["blocks"]:
        row(b["name"], b)
        for p in b["parts"]:
            itself = [a for a in b["attention"] if a["name"] == p["name"]]  # the pixel U-Net's Attention blocks
            row("." + p["name"].removeprefix(b["name"] + "."), p, "  ", "  " + said(itself[0]) if itself else "")
            for a in b["attention"]:
                if a["name"].startswith(p["name"] + "."):  # attn1, attn2 of a transformer block
                    lines.append(f"{'    .' + a['name'].removeprefix(p['name'] + '.'):<36} {said(a)}")
    for r in anatomy["after_blocks"]:
        row(r["name"], r)
    lines.append(f"{'sum of the top-level modules':<92} {sum(anatomy['params_by_top_level_module'].values()):>10,}")
    tp = anatomy["time_embedding"]
    widths = sorted({p["out"][-1] for p in tp["per_resnet"]})
    lines.append(f"time: t {chw(tp['sinusoid']['in'])} -> sinusoid {tp['sinusoid']['num_channels']} -> "
                 f"{', '.join(tp['mlp']['layers'])} ({tp['mlp']['params']:,} params) -> e(t) "
                 f"{chw(tp['mlp']['out'])} -> in each of {tp['num_resnets']} ResNets: SiLU, Linear "
                 f"{tp['mlp']['out'][-1]} -> C (C = {', '.join(map(str, widths))}; {tp['per_resnet_params']:,} params "
                 "in all), added to every position after the ResNet's first conv")
    lines.append(anatomy["summary"])
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------
# 4. The figure: a U of blocks per model
# ----------------------------------------------------------------------------------------------------------------

BOX_W, BOX_H, LEVEL_H = 0.88, 1.3, 1.95  # box size and the height of one resolution level (1 = a column's width)
SKIP_GAP = 0.2  # between the horizontal runs of nested skip arrows
INCHES = 1.6  # one column
COLOURS = {"cross": "#f6c28b", "self": "#9ecae1", None: "#e8e8e8"}
SKIP_COLOUR = "#2c7fb8"


def u_layout(anatomy: dict) -> list[dict]:
    """The nodes of the U: conv_in, the blocks, the output convolution, each with an x (forward order), a level
    (0 = the input's resolution; one more per halving) and a y."""
    sizes = sorted({b["resolution"][0] for b in anatomy["blocks"]}, reverse=True)
    conv_in = next(r for r in anatomy["before_blocks"] if r["name"] == "conv_in")
    first = conv_in["out"][2]
    nodes = [{**conv_in, "title": "conv_in", "level": sizes.index(first) if first in sizes else 0,
              "resolution": conv_in["out"][2:]}]
    for b in anatomy["blocks"]:
        nodes.append({**b, "title": b["name"].replace("_blocks.", " ").replace("mid_block", "mid"),
                      "level": sizes.index(b["resolution"][0])})
    tail = [r for r in anatomy["after_blocks"] if r["name"] in ("conv_norm_out", "conv_act", "conv_out")]
    nodes.append({"name": "out", "title": "out", "level": nodes[0]["level"],
                  "class": "conv_norm_out, SiLU,\nconv_out", "in": tail[0]["in"], "out": tail[-1]["out"],
                  "params": sum(r["params"] for r in tail)})
    for x, node in enumerate(nodes):
        node["x"], node["y"] = x, -node["level"] * LEVEL_H
    return nodes


def _wrap(words: list[str], width: int, sep: str) -> list[str]:
    lines = [words[0]]
    for w in words[1:]:
        if len(lines[-1] + sep + w) <= width:
            lines[-1] += sep + w
        else:
            lines[-1] += sep.rstrip()
            lines.append(w)
    return lines


def _node_text(node: dict) -> str:
    """The lines under a box's title: class, shapes, parameters, parts, skips read, attention."""
    lines = [node["class"], f"{chw(node['in'])} -> {chw(node['out'])}", f"{node['params']:,} params"]
    if node.get("parts"):
        kinds = [p["name"].split(".")[-2] for p in node["parts"]]
        lines += _wrap([f"{kinds.count(k)} {k[:-1] if kinds.count(k) == 1 else k}" for k in PART_LISTS if k in kinds],
                       22, " + ")
    if node.get("skips_in"):
        lines.append(f"skips in: {','.join(str(s[1]) for s in node['skips_in'])} ch")
    heads = set()
    for (kind, _, q, k, h, d), n in attention_groups(node.get("attention", [])).items():
        lines.append(f"{n}x {kind}-attn {q}x{k} {'tok' if kind == 'cross' else 'pos'}")
        heads.add(f"{h} heads x {d}")
    return "\n".join(lines + sorted(heads))


def _top_of(nodes: list[dict], x0: float, x1: float) -> float:
    return max(n["y"] + BOX_H / 2 for n in nodes if min(x0, x1) - 0.5 <= n["x"] <= max(x0, x1) + 0.5)


def draw_skips(ax, nodes: list[dict], skips: list[dict]) -> float:
    """Each skip as a dashed bracket from the top of the module that kept it to the top of the up block that reads
    it, nested brackets stacked by span, each labelled with its shape; returns the height of the highest."""
    where = {n["name"]: n for n in nodes}
    placed: list[tuple[float, float, float]] = []  # (x0, x1, height) of the brackets drawn
    for s in sorted(skips, key=lambda s: where[s["to"]]["x"] - where[s["from"]]["x"]):
        a, b = where[s["from"]], where[s["to"]]
        leaving, arriving = [t for t in skips if t["from"] == s["from"]], [t for t in skips if t["to"] == s["to"]]
        x0 = a["x"] + 0.3 * (leaving.index(s) - (len(leaving) - 1) / 2) / max(len(leaving) - 1, 1)
        x1 = b["x"] - 0.3 * (arriving.index(s) - (len(arriving) - 1) / 2) / max(len(arriving) - 1, 1)
        height = _top_of(nodes, a["x"], b["x"]) + SKIP_GAP
        for p0, p1, h in placed:
            if p0 - 0.05 < x1 and x0 < p1 + 0.05 and h + SKIP_GAP > height:
                height = h + SKIP_GAP
        placed.append((x0, x1, height))
        top_b = b["y"] + BOX_H / 2
        ax.plot([x0, x0, x1, x1], [a["y"] + BOX_H / 2, height, height, top_b + 0.1], linestyle="--",
                color=SKIP_COLOUR, linewidth=0.9)
        ax.add_patch(FancyArrowPatch((x1, top_b + 0.12), (x1, top_b), arrowstyle="-|>", mutation_scale=9,
                                     color=SKIP_COLOUR, linewidth=0.9))
        ax.text((x0 + x1) / 2, height, chw(s["shape"]), ha="center", va="center", fontsize=7.5, color=SKIP_COLOUR,
                bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.5})
    return max([h for _, _, h in placed] + [BOX_H / 2])


def time_text(anatomy: dict) -> str:
    tp = anatomy["time_embedding"]
    widths = sorted({p["out"][-1] for p in tp["per_resnet"]})
    mlp, width = tp["mlp"]["layers"], tp["mlp"]["out"][-1]
    return (f"the timestep path\n"
            f"t {chw(tp['sinusoid']['in'])}\n"
            f"-> time_proj: {tp['sinusoid']['num_channels']} sinusoidal features\n"
            f"   (no parameters)\n"
            f"-> time_embedding: {mlp[0]}, SiLU,\n"
            f"   {mlp[2]} ({tp['mlp']['params']:,} params)\n"
            f"-> e(t) {chw(tp['mlp']['out'])}\n"
            f"-> in each of the {tp['num_resnets']} ResNets, its own\n"
            f"   time_emb_proj: SiLU, Linear {width} -> C\n"
            f"   (C = {', '.join(map(str, widths))}; {tp['per_resnet_params']:,} params in all),\n"
            f"   added at every position after\n"
            f"   the ResNet's first conv")


def draw_u(ax, anatomy: dict) -> tuple[float, float]:
    """One U on ``ax``; returns its (bottom, top) in data units."""
    nodes = u_layout(anatomy)
    depth = max(n["level"] for n in nodes)
    for node in nodes:
        kinds = {a["kind"] for a in node.get("attention", [])}
        colour = COLOURS["cross" if "cross" in kinds else "self" if "self" in kinds else None]
        ax.add_patch(FancyBboxPatch((node["x"] - BOX_W / 2, node["y"] - BOX_H / 2), BOX_W, BOX_H,
                                    boxstyle="round,pad=0.02", facecolor=colour, edgecolor="#555555", linewidth=0.8))
        ax.text(node["x"], node["y"] + BOX_H / 2 - 0.07, node["title"], ha="center", va="top", fontsize=9,
                weight="bold")
        ax.text(node["x"], node["y"] + BOX_H / 2 - 0.3, _node_text(node), ha="center", va="top", fontsize=7.5,
                linespacing=1.2)
    for a, b in zip(nodes, nodes[1:]):
        ax.add_patch(FancyArrowPatch((a["x"] + BOX_W / 2, a["y"]), (b["x"] - BOX_W / 2, b["y"]), arrowstyle="-|>",
                                     mutation_scale=11, color="#333333", linewidth=1.1))
    for level in range(depth + 1):
        h, w = next(n["resolution"] for n in nodes if n["level"] == level and "resolution" in n)
        ax.text(-0.55, -level * LEVEL_H, f"{h}x{w}", ha="right", va="center", fontsize=9, color="#666666")
    top = draw_skips(ax, nodes, anatomy["skips"]) + 0.25
    bottom = -depth * LEVEL_H - BOX_H / 2 - 0.05
    ax.text(-0.47, bottom + 0.05, time_text(anatomy), ha="left", va="bottom", fontsize=7.5, family="monospace",
            linespacing=1.15, bbox={"facecolor": "#fff8dc", "edgecolor": "#b8860b", "linewidth": 0.6})
    ax.set_xlim(-0.95, len(nodes) - 0.45)
    ax.set_ylim(bottom, top)
    ax.set_axis_off()
    inputs = anatomy["inputs"]
    context = (f"; context {chw(inputs['encoder_hidden_states'])} from {inputs['context']['source']}"
               + (f" ({inputs['context']['prompt']!r})" if inputs["context"]["prompt"] else "")
               if "context" in inputs else "")
    ax.set_title(f"{anatomy['model']}: {anatomy['class']}, {anatomy['total_params']:,} parameters; x_t "
                 f"{chw(inputs['sample'])}, t = {inputs['timestep']}{context}", fontsize=10.5, loc="left",
                 weight="bold")
    return bottom, top


def anatomy_figure(anatomies: list[dict]):
    """One U per anatomy, stacked; one data unit is ``INCHES`` on both axes."""
    columns = max(len(a["blocks"]) + 2 for a in anatomies)
    fig = Figure(figsize=((columns + 0.5) * INCHES, 10), dpi=110, layout="constrained")
    axes = fig.subplots(len(anatomies), 1, squeeze=False)[:, 0]
    spans = []
    for ax, anatomy in zip(axes, anatomies):
        bottom, top = draw_u(ax, anatomy)
        ax.set_xlim(-0.95, columns - 0.45)
        spans.append(top - bottom)
    axes[0].get_gridspec().set_height_ratios(spans)
    fig.set_size_inches((columns + 0.5) * INCHES, sum(spans) * INCHES * 0.85 + 0.45 * len(anatomies) + 0.7)
    fig.suptitle("U-Net anatomy, measured with forward hooks: each block's input -> output shape (channels x height x "
                 "width) and parameters,\ndrawn at the resolution its ResNets work at. Grey: ResNets only; blue: with "
                 "self-attention (QxK pos: Q query positions x K key positions);\norange: also cross-attention (QxK "
                 "tok: Q positions x K text tokens). Dashed: the skip connections, with their shapes", fontsize=10)
    return fig


# ----------------------------------------------------------------------------------------------------------------
# 5. The lesson in one call (`sd-course anatomy`)
# ----------------------------------------------------------------------------------------------------------------


def default_model(model: Optional[str], shipped: str, flag: str) -> str:
    if model is not None:
        return model
    found = find_shipped(shipped)
    if found is None:
        raise InputError(f"no {flag} given and the shipped {shipped} was not found: pass a pipeline or U-Net folder")
    return str(found)


def measure(folder: Path, label: str, timestep: int = 500, prompt: str = PROMPT, device="cpu") -> dict:
    """Load one U-Net, run it once with the hooks on, and return its anatomy."""
    unet = load_unet(folder)
    inputs, described = forward_inputs(unet, folder, timestep, prompt)
    device = resolve_device(device)
    unet = unet.to(device)
    records, out = record_forward(unet, {k: v.to(device) for k, v in inputs.items()})
    if list(out.shape) != [described["sample"][0], unet.config.out_channels, *described["sample"][2:]]:
        raise RuntimeError(f"the U-Net returned {list(out.shape)} for an input of {described['sample']}")
    return anatomy_of(unet, records, described, label)


def write_anatomy_lesson(pixel_model: Optional[str] = None, text_model: Optional[str] = None,
                         output_dir: str = "figures/anatomy", prompt: Optional[str] = None, timestep: int = 500,
                         device: Optional[str] = "auto") -> dict:
    """Measure both U-Nets (default: the shipped ones; "none" leaves one out); write anatomy.png and anatomy.json
    into ``output_dir``; return the numbers, with the printed table under "table"."""
    started = time.perf_counter()
    prompt = PROMPT if prompt is None else prompt
    wanted = [(model, flag, expected, shipped) for model, flag, expected, shipped in (
        (pixel_model, "--pixel_model", "UNet2DModel", PIXEL_MODEL),
        (text_model, "--text_model", "UNet2DConditionModel", TEXT_MODEL)) if model != "none"]
    if not wanted:
        raise InputError("--pixel_model none and --text_model none leave nothing to measure")
    folders = []  # checked before anything runs or is written
    for model, flag, expected, shipped in wanted:
        model = default_model(model, shipped, flag)
        folders.append((model, check_model(model, flag, expected)))
    resolve_device(device)
    out = check_output_dir(output_dir)
    anatomies = [measure(folder, relative_to_root(model), timestep, prompt, device) for model, folder in folders]
    numbers = {"models": anatomies, "timestep": timestep,
               "note": "shapes are (batch, channels, height, width) as the forward hooks saw them, batch 1; params: "
                       "the parameters of each module (a block's parts sum to the block, the top-level modules to "
                       "the model); attention keys: positions (self) or text tokens (cross), measured as the "
                       "outputs of to_q and to_k"}
    fig = anatomy_figure(anatomies)
    fig.savefig(out / "anatomy.png", dpi=fig.dpi, facecolor="white")
    numbers["seconds"] = round(time.perf_counter() - started, 2)
    inputs = [folder for _, folder in folders]  # the U-Nets' weights, and the text encoder that made the context
    inputs += [folder.parent / "text_encoder" for _, folder in folders if (folder.parent / "text_encoder").is_dir()]
    write_result(out / "anatomy.json", numbers, inputs=inputs, device=resolve_device(device))
    numbers["table"] = "\n\n".join(table(a) for a in anatomies)
    return numbers
