"""Images in and out: tensors to PIL images, sample grids, one PNG per image, and output paths checked before any
slow work.

Grids use ``diffusers.utils.make_image_grid``. Images come in as uint8 tensors (N, C, H, W) or as floats in the model
range [-1, 1]; 28x28 digits are enlarged with nearest-neighbour pixels so that they can be seen. Figures with axes
live in ``sd_course/core/plots.py``.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from diffusers.utils import make_image_grid
from PIL import Image, ImageOps

from sd_course.core.data import to_uint8
from sd_course.core.errors import InputError

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


# ----------------------------------------------------------------------------------------------------------------
# 3. Where `sd-course sample` writes
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


