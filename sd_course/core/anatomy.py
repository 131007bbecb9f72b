"""The U-Net's anatomy, measured: every block's input and output shape and parameter count, the timestep-embedding
path, and where self- and cross-attention sit, for both shipped U-Nets, from forward hooks on one real forward pass.

    sd-course anatomy --output_dir docs/figures/anatomy

runs ``pipelines/ddpm-mnist`` (the pixel ``UNet2DModel``) and ``pipelines/mini-sd-mnist/unet`` (the mini Stable
Diffusion's ``UNet2DConditionModel``, with the caption "a handwritten digit seven" encoded by the pipeline's own
text encoder) once each, and writes:

    anatomy.png    one U per model: the blocks in the order the forward pass runs them, drawn at the resolution they
                   work at (down the left, the middle block at the bottom, up the right), each with its input ->
                   output shape, its parameters and its attention; dashed: the skip connections; beside it, the
                   timestep-embedding path with its shapes
    anatomy.json   per model: every block and its parts (resnets, attentions, down/upsamplers) with the shapes the
                   hooks saw and the parameter counts, the time-embedding path, each attention layer (self or cross,
                   query positions, key positions or tokens, heads x head width)
    (stdout)       the same as a table

What the hooks measure. ``module.register_forward_hook`` calls a function after each sub-module's forward with its
actual inputs and outputs, so the shapes are the ones the model computed, not ones derived from the config (a test
checks them against calling each block directly). A U-Net for x_t of shape (C, H, W):

    conv_in                 C -> c_0 channels, H x W
    down block i            resnets at c_i channels, then a stride-2 conv halves H and W (not the last block); every
                            resnet output (and the conv_in output, and each downsampled map) is kept as a *skip*
    mid block               resnet, attention, resnet at the coarsest level
    up block j              each resnet reads concat(h, one skip) (so its input has more channels than its output),
                            then an upsampler doubles H and W (not the last block); the skips are used in reverse
    conv_norm_out, conv_out GroupNorm, SiLU, c_0 -> C channels: the prediction, the shape of x_t

The timestep. ``time_proj`` turns each t into ``c_0`` sinusoidal features, ``[cos(t w_k), sin(t w_k)]`` with
``w_k = 10000^(-k / (c_0/2))``, k = 0..c_0/2 - 1 (``flip_sin_to_cos``: cosines first; no parameters); the MLP
``time_embedding`` (Linear c_0 -> 4 c_0, SiLU, Linear 4 c_0 -> 4 c_0) makes one embedding e(t); and every ResNet has
its own ``time_emb_proj`` (SiLU, then Linear 4 c_0 -> its channels) whose output is added to each position of the
ResNet's feature map after its first convolution: one per-channel shift per ResNet, a function of t.

Attention. In the pixel U-Net an ``Attention`` layer is self-attention over the H x W positions of its feature map
(each position's query against every position's key: N^2 scores, so it sits only at the coarsest level). In the
mini-SD every ``Transformer2DModel`` holds ``attn1`` (self-attention over the latent positions) and ``attn2``
(cross-attention: queries from the N positions, keys and values from the L tokens of the text encoder) and a
feed-forward layer; ``sd-course attention`` draws the maps of those ``attn2`` layers.

Measured (2-core Xeon CPU, each forward pass well under a second): the pixel U-Net has 2,734,945 parameters, self-
attention with 4 heads of 32 only at 7x7 (49 positions) in the last down block, the middle block and the first up
block; the mini-SD U-Net has 5,767,620, self- and cross-attention only at the 4x4 latent level (16 positions reading
16 tokens, 8 heads of 16) in six transformer blocks. anatomy.json has every number.
Cmd: sd-course anatomy --output_dir docs/figures/anatomy
Fig: docs/figures/anatomy/anatomy.png
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import torch
from diffusers import UNet2DConditionModel, UNet2DModel
from diffusers.models.attention_processor import Attention
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from sd_course.core.device import resolve_device
from sd_course.core.errors import InputError
from sd_course.core.images import check_output_dir
from sd_course.core.shipped import find_shipped

SHIPPED = ("pipelines/ddpm-mnist", "pipelines/mini-sd-mnist/unet")
UNET_CLASSES = {"UNet2DModel": UNet2DModel, "UNet2DConditionModel": UNet2DConditionModel}
PART_LISTS = ("resnets", "attentions", "downsamplers", "upsamplers")  # what a diffusers U-Net block is made of


# ----------------------------------------------------------------------------------------------------------------
# 1. Loading a U-Net (a pipeline folder or its unet/ folder) and the inputs of one forward pass
# ----------------------------------------------------------------------------------------------------------------


def unet_folder(model: str) -> Path:
    """The folder holding the U-Net's config.json: ``model`` itself or its ``unet/``; InputError otherwise."""
    path = Path(model).expanduser()
    if not path.is_dir():
        raise InputError(f"--model {model!r} is not a folder: give a pipeline folder (e.g. pipelines/ddpm-mnist) or "
                         "a U-Net folder (e.g. pipelines/mini-sd-mnist/unet)")
    for folder in (path / "unet", path):
        if (folder / "config.json").is_file():
            return folder
    raise InputError(f"--model {model!r} has neither unet/config.json nor config.json: it holds no U-Net")


def load_unet(model: str):
    """(U-Net in eval mode, its folder): a ``UNet2DModel`` or a ``UNet2DConditionModel``, as its config says."""
    folder = unet_folder(model)
    try:
        class_name = json.loads((folder / "config.json").read_text()).get("_class_name")
    except json.JSONDecodeError as e:
        raise InputError(f"{folder / 'config.json'} is not valid JSON ({e})") from e
    if class_name not in UNET_CLASSES:
        raise InputError(f"{folder / 'config.json'} describes a {class_name}, not one of {sorted(UNET_CLASSES)}")
    return UNET_CLASSES[class_name].from_pretrained(str(folder)).eval(), folder


@torch.no_grad()
def text_context(unet, folder: Path, prompt: str, seed: int = 0) -> tuple[torch.Tensor, dict]:
    """The ``encoder_hidden_states`` a conditional U-Net reads: the prompt through the text encoder of the pipeline
    the U-Net belongs to (``../text_encoder``, ``../tokenizer``), else N(0, I) tokens (77, as Stable Diffusion)."""
    from transformers import CLIPTextModel, CLIPTokenizer  # (a third-party import: the layer rule is sd_course's)

    root = folder.parent
    width = unet.config.cross_attention_dim
    if (root / "text_encoder" / "config.json").is_file() and (root / "tokenizer").is_dir():
        tokenizer = CLIPTokenizer.from_pretrained(str(root / "tokenizer"))
        text_encoder = CLIPTextModel.from_pretrained(str(root / "text_encoder")).eval()
        length = tokenizer.model_max_length
        ids = tokenizer(prompt, padding="max_length", max_length=length, truncation=True, return_tensors="pt")
        real = len(tokenizer(prompt, max_length=length, truncation=True).input_ids)
        context = text_encoder(ids.input_ids)[0]
        return context, {"source": f"{root.name}/text_encoder", "prompt": prompt, "num_tokens": length,
                         "num_real_tokens": real, "width": int(context.shape[-1])}
    context = torch.randn(1, 77, width, generator=torch.Generator().manual_seed(seed))
    return context, {"source": "random N(0, I) tokens: no text encoder beside the U-Net", "prompt": None,
                     "num_tokens": 77, "num_real_tokens": None, "width": width}


def forward_inputs(unet, folder: Path, timestep: int = 500, prompt: str = "a handwritten digit seven",
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


def watched_modules(unet) -> dict[str, torch.nn.Module]:
    """The modules the anatomy is made of, by name: the top-level parts, each block and its parts, every ResNet's
    ``time_emb_proj``, and every ``Attention`` layer."""
    watched = {}
    for name, module in unet.named_modules():
        parts = name.split(".")
        top = len(parts) == 1 and name and not isinstance(module, torch.nn.ModuleList)
        block = (len(parts) == 2 and parts[0] in ("down_blocks", "up_blocks")) or name == "mid_block"
        part = (parts[0] in ("down_blocks", "up_blocks") and len(parts) == 4 and parts[2] in PART_LISTS) or (
            parts[0] == "mid_block" and len(parts) == 3 and parts[1] in PART_LISTS)
        if top or block or part or name.endswith("time_emb_proj") or isinstance(module, Attention):
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
            skips = argument(args, kwargs, "res_hidden_states_tuple", 1) if name.startswith("up_blocks.") and \
                name.count(".") == 1 else None
            if skips is not None:
                record["skips_in"] = [list(s.shape) for s in skips]
            if name.startswith("down_blocks.") and name.count(".") == 1 and isinstance(output, tuple):
                record["skips_out"] = [list(s.shape) for s in output[1]]
            if isinstance(module, Attention):
                context = argument(args, kwargs, "encoder_hidden_states", 1)
                queries = math.prod(hidden.shape[2:]) if hidden.ndim == 4 else hidden.shape[1]
                record.update(kind="cross" if context is not None else "self", query_positions=int(queries),
                              keys=int(context.shape[1]) if context is not None else int(queries),
                              heads=int(module.heads), head_dim=int(module.inner_dim // module.heads))
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
# 3. From the records to the anatomy: blocks, the time path, the attention layers
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
    prefix = name + "."
    return [n for n in records if n.startswith(prefix) and n.count(".") == name.count(".") + 2
            and n.split(".")[-2] in PART_LISTS]


def enclosing_resolution(name: str, records: dict) -> Optional[list[int]]:
    """(H, W) of an attention layer: its own 4-D input, else that of the nearest enclosing watched module (a
    transformer's attn1/attn2 see (B, H*W, C) tokens; its ``attentions.k`` saw (B, C, H, W))."""
    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        shape = records.get(".".join(parts[:k]), {}).get("in")
        if shape is not None and len(shape) == 4:
            return shape[2:]
    return None


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


def attention_layers(records: dict) -> list[dict]:
    layers = []
    for name, r in records.items():
        if "kind" in r:
            layers.append({"name": name, "kind": r["kind"], "resolution": enclosing_resolution(name, records),
                           "query_positions": r["query_positions"], "keys": r["keys"], "heads": r["heads"],
                           "head_dim": r["head_dim"], "params": r["params"]})
    return layers


def anatomy_of(unet, records: dict, described: dict, model: str) -> dict:
    """Everything measured about one U-Net, as JSON-ready numbers."""
    top = [{"name": n, **records[n]} for n, _ in unet.named_children() if n in records]
    blocks = []
    for name in block_names(unet):
        r = records[name]
        parts = [{"name": n, **records[n]} for n in block_parts(name, records)]
        resolution = next((p["in"][2:] for p in parts if p["name"].split(".")[-2] == "resnets"), r["in"][2:])
        blocks.append({"name": name, **r, "resolution": resolution, "parts": parts,
                       "attention": [a for a in attention_layers(records) if a["name"].startswith(name + ".")]})
    top_level = {n: num_parameters(m) for n, m in unet.named_children()}
    total = num_parameters(unet)
    attention = attention_layers(records)
    return {
        "model": model, "class": type(unet).__name__, "total_params": total,
        "params_by_top_level_module": top_level, "inputs": described,
        "output": records.get("conv_out", {}).get("out"), "top_level": top, "blocks": blocks,
        "time_embedding": time_path(unet, records), "attention": attention,
        "summary": summary_line(model, type(unet).__name__, total, attention),
    }


def summary_line(model: str, class_name: str, total: int, attention: list[dict]) -> str:
    groups: dict[tuple, int] = {}
    for a in attention:
        key = (a["kind"], "x".join(map(str, a["resolution"] or [])), a["query_positions"], a["keys"], a["heads"],
               a["head_dim"])
        groups[key] = groups.get(key, 0) + 1
    said = [f"{n} {kind}-attention at {res} ({q} positions x {k} {'tokens' if kind == 'cross' else 'positions'}, "
            f"{h} heads of {d})" for (kind, res, q, k, h, d), n in groups.items()]
    return f"{model}: {class_name}, {total:,} parameters; " + ("; ".join(said) if said else "no attention")


def table(anatomy: dict) -> str:
    """The anatomy as fixed-width text: one line per part, blocks and their parts indented, then the time path."""
    inputs = anatomy["inputs"]
    lines = [f"{anatomy['model']}  ({anatomy['class']}, {anatomy['total_params']:,} parameters; one forward pass on "
             f"x_t {chw(inputs['sample'])} at t={inputs['timestep']}"
             + (f", context {chw(inputs['encoder_hidden_states'])} from {inputs['context']['source']}"
                if "context" in inputs else "") + ")",
             f"{'module':<36} {'type':<26} {'input':<14} {'output':<14} {'params':>10}"]

    def row(name, r, indent=""):
        extra = ""
        if r.get("skips_in"):
            extra = f"  + skips {', '.join(chw(s).split('x')[0] for s in r['skips_in'])} ch"
        if r.get("skips_out"):
            extra = f"  keeps {len(r['skips_out'])} skips"
        if "kind" in r:
            extra = f"  {r['kind']}-attn {r['query_positions']}x{r['keys']}, {r['heads']} heads x {r['head_dim']}"
        lines.append(f"{indent + name:<36} {r['class']:<26} {chw(r['in']):<14} {chw(r['out']):<14} "
                     f"{r['params']:>10,}{extra}")

    blocks = {b["name"]: b for b in anatomy["blocks"]}
    for r in anatomy["top_level"]:
        row(r["name"], r)
    for name, b in blocks.items():
        row(name, b)
        for p in b["parts"]:
            row("." + p["name"].removeprefix(name + "."), p, indent="  ")
            for a in b["attention"]:
                if a["name"].startswith(p["name"] + ".") and a["name"] != p["name"]:
                    lines.append(f"{'    .' + a['name'].removeprefix(p['name'] + '.'):<36} {'Attention':<26} "
                                 f"{a['kind']}-attention: {a['query_positions']} queries x {a['keys']} "
                                 f"{'tokens' if a['kind'] == 'cross' else 'positions'}, {a['heads']} heads x "
                                 f"{a['head_dim']}")
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


def _k(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)


def u_layout(anatomy: dict) -> list[dict]:
    """The nodes of the U: conv_in, the blocks, conv_out, each with an x (forward order) and a level (0 = full
    resolution; one more per halving)."""
    blocks = anatomy["blocks"]
    sizes = sorted({b["resolution"][0] for b in blocks}, reverse=True)
    first = anatomy["inputs"]["sample"][2]
    nodes = [{"name": "conv_in", "title": "conv_in", "level": sizes.index(first) if first in sizes else 0,
              **next(r for r in anatomy["top_level"] if r["name"] == "conv_in")}]
    for b in blocks:
        nodes.append({**b, "title": b["name"].replace("_blocks.", " ").replace("mid_block", "mid"),
                      "level": sizes.index(b["resolution"][0])})
    tail = [r for r in anatomy["top_level"] if r["name"] in ("conv_norm_out", "conv_out")]
    nodes.append({"name": "out", "title": "norm, SiLU, conv_out", "level": nodes[0]["level"], "class": "GroupNorm+Conv2d",
                  "in": tail[0]["in"], "out": tail[-1]["out"], "params": sum(r["params"] for r in tail)})
    for x, node in enumerate(nodes):
        node["x"] = x
    return nodes


def _node_text(node: dict) -> str:
    lines = [node["title"], node["class"], f"{chw(node['in'])} -> {chw(node['out'])}", f"{_k(node['params'])} params"]
    if node.get("parts"):
        kinds = [p["name"].split(".")[-2] for p in node["parts"]]
        lines.append(" + ".join(f"{kinds.count(k)} {k[:-1] if kinds.count(k) == 1 else k}" for k in PART_LISTS
                                if k in kinds))
    seen = {}
    for a in node.get("attention", []):
        key = f"{a['kind']}-attn {a['query_positions']}x{a['keys']}" + (" tok" if a["kind"] == "cross" else "")
        seen[key] = seen.get(key, 0) + 1
    lines += [f"{n} x {key}" if n > 1 else key for key, n in seen.items()]
    return "\n".join(lines)


def draw_u(ax, anatomy: dict) -> None:
    nodes = u_layout(anatomy)
    depth = max(n["level"] for n in nodes)
    colours = {"cross": "#f6c28b", "self": "#9ecae1", None: "#e5e5e5"}
    for node in nodes:
        kinds = {a["kind"] for a in node.get("attention", [])}
        colour = colours["cross" if "cross" in kinds else "self" if "self" in kinds else None]
        y = -node["level"] * 1.6
        ax.add_patch(FancyBboxPatch((node["x"] - 0.46, y - 0.62), 0.92, 1.24, boxstyle="round,pad=0.02",
                                    facecolor=colour, edgecolor="#555555", linewidth=0.8))
        ax.text(node["x"], y, _node_text(node), ha="center", va="center", fontsize=6.5)
        node["y"] = y
    for a, b in zip(nodes, nodes[1:]):
        ax.add_patch(FancyArrowPatch((a["x"] + 0.46, a["y"]), (b["x"] - 0.46, b["y"]), arrowstyle="-|>",
                                     mutation_scale=9, color="#333333", linewidth=0.9))
    # skips: what each down block (and conv_in) keeps is read by the up block at the same resolution
    ups = [n for n in nodes if n["name"].startswith("up_blocks.")]
    downs = [n for n in nodes if n["name"] == "conv_in" or n["name"].startswith("down_blocks.")]
    for d in downs:
        target = next((u for u in ups if u["level"] == d["level"]), None)
        if target is not None:
            n_skips = len(d.get("skips_out", [None]))
            ax.add_patch(FancyArrowPatch((d["x"], d["y"] + 0.62), (target["x"], target["y"] + 0.62),
                                         connectionstyle="arc3,rad=-0.25", arrowstyle="-|>", mutation_scale=8,
                                         linestyle="--", color="#2c7fb8", linewidth=0.8))
            ax.text((d["x"] + target["x"]) / 2, d["y"] + 0.75 + 0.12 * (target["x"] - d["x"]),
                    f"{n_skips} skip{'s' if n_skips > 1 else ''}", ha="center", fontsize=6, color="#2c7fb8")
    ax.set_xlim(-0.6, len(nodes) - 0.4)
    ax.set_ylim(-depth * 1.6 - 0.9, 0.9 + 0.12 * len(nodes))
    ax.set_axis_off()
    tp = anatomy["time_embedding"]
    widths = sorted({p["out"][-1] for p in tp["per_resnet"]})
    time_text = (f"timestep path\nt {chw(tp['sinusoid']['in'])}\n-> sinusoid: {tp['sinusoid']['num_channels']} "
                 f"features\n   (0 params)\n-> MLP: {tp['mlp']['layers'][0]},\n   SiLU, {tp['mlp']['layers'][2]}\n"
                 f"   ({_k(tp['mlp']['params'])} params)\n-> e(t) {chw(tp['mlp']['out'])}\n-> each of "
                 f"{tp['num_resnets']} ResNets:\n   SiLU, Linear {tp['mlp']['out'][-1]} -> C\n   "
                 f"(C = {', '.join(map(str, widths))}; {_k(tp['per_resnet_params'])} params)\n   added after its "
                 "first conv")
    ax.text(len(nodes) - 0.45, -depth * 1.6 - 0.85, time_text, ha="right", va="bottom", fontsize=6.5,
            family="monospace", bbox={"facecolor": "#fff8dc", "edgecolor": "#b8860b", "linewidth": 0.6})
    inputs = anatomy["inputs"]
    context = (f"; context {chw(inputs['encoder_hidden_states'])} ({inputs['context']['source']})"
               if "context" in inputs else "")
    ax.set_title(f"{anatomy['model']}: {anatomy['class']}, {anatomy['total_params']:,} parameters "
                 f"(x_t {chw(inputs['sample'])}, t = {inputs['timestep']}{context})", fontsize=9)


def anatomy_figure(anatomies: list[dict]):
    width = max(len(a["blocks"]) + 2 for a in anatomies) * 1.55 + 0.5
    heights = [max(b["resolution"] and len({c["resolution"][0] for c in a["blocks"]}) for b in a["blocks"]) * 1.4
               + 1.8 for a in anatomies]
    fig = Figure(figsize=(width, sum(heights)), dpi=110, layout="constrained")
    axes = fig.subplots(len(anatomies), 1, squeeze=False, height_ratios=heights)[:, 0]
    for ax, anatomy in zip(axes, anatomies):
        draw_u(ax, anatomy)
    fig.suptitle("U-Net anatomy from forward hooks: each block's input -> output shape (C x H x W) and parameters; "
                 "grey: ResNets only, blue: + self-attention, orange: + self- and cross-attention; dashed: skip "
                 "connections", fontsize=9)
    return fig


# ----------------------------------------------------------------------------------------------------------------
# 5. The lesson in one call (`sd-course anatomy`)
# ----------------------------------------------------------------------------------------------------------------


def default_models() -> list[str]:
    found = [find_shipped(m) for m in SHIPPED]
    if any(f is None for f in found):
        raise InputError(f"no --model given and the shipped {', '.join(SHIPPED)} were not all found: pass a pipeline "
                         "or U-Net folder")
    return [str(f) for f in found]


def measure(model: str, timestep: int = 500, prompt: str = "a handwritten digit seven", device="cpu",
            label: Optional[str] = None) -> dict:
    """Load one U-Net, run it once with the hooks on, and return its anatomy."""
    unet, folder = load_unet(model)
    inputs, described = forward_inputs(unet, folder, timestep, prompt)
    device = resolve_device(device)
    unet = unet.to(device)
    records, out = record_forward(unet, {k: v.to(device) for k, v in inputs.items()})
    if list(out.shape) != described["sample"] and unet.config.out_channels == unet.config.in_channels:
        raise RuntimeError(f"the U-Net returned {list(out.shape)} for an input of {described['sample']}")
    return anatomy_of(unet, records, described, label or model)


def write_anatomy_lesson(models: Optional[list[str]] = None, output_dir: str = "figures/anatomy",
                         timestep: int = 500, prompt: str = "a handwritten digit seven",
                         device: Optional[str] = "auto") -> dict:
    """Measure each model (default: both shipped U-Nets); write anatomy.png and anatomy.json into ``output_dir``
    (only those two files); return the numbers, with the printed table under "table"."""
    if not 0 <= timestep < 10000:
        raise InputError(f"--timestep must be in [0, 10000), got {timestep}")
    models = list(models) if models else default_models()
    for model in models:
        unet_folder(model)  # fail on a wrong path before anything runs or is written
    out = check_output_dir(output_dir)
    root = find_shipped("pipelines")
    labels = []
    for model in models:  # the shipped ones named as in the docs, not by the absolute path of this checkout
        path = Path(model).expanduser().resolve()
        labels.append(str(Path("pipelines") / path.relative_to(root.resolve()))
                      if root is not None and path.is_relative_to(root.resolve()) else model)
    anatomies = [measure(m, timestep, prompt, device, label) for m, label in zip(models, labels)]
    numbers = {"models": anatomies, "timestep": timestep,
               "note": "shapes are (batch, channels, height, width) as the forward hooks saw them, batch 1; params: "
                       "the parameters of each module (a block's parts sum to the block, the top-level modules to "
                       "the model); attention keys: positions (self) or text tokens (cross)"}
    fig = anatomy_figure(anatomies)
    fig.savefig(out / "anatomy.png", dpi=fig.dpi, facecolor="white")
    (out / "anatomy.json").write_text(json.dumps(numbers, indent=2))
    numbers["table"] = "\n\n".join(table(a) for a in anatomies)
    return numbers
