"""Where a number comes from: a result file records the command that measured it, on which files, where and when.

    python benchmarks/quick_recipes.py --config training/configs/mnist-quick.yaml --reference ylecun/mnist:test \\
        --output_json benchmarks/results/my_run.json      # writes the numbers and their "provenance" block

A result is a JSON file whose ``"provenance"`` block says:

- ``argv``: the command that wrote it, run from the checkout's root, with ``{output}`` where the result file goes
  (or ``{output_dir}`` after ``--output_dir``, for commands that write a folder: ``sd-course anatomy``;
  ``sd-course results rerun ID`` runs it again into a temporary one and compares); ``null`` when a library call
  inside another program (pytest, a notebook) wrote it, since that program's command would not make it again;
- ``inputs``: ``{path: sha256}`` of the files it measured (the model's weights, the recipe, the classifier whose
  features FID uses), paths relative to the checkout: when one of them changes, the result no longer describes
  what is shipped and ``sd-course results check`` says so (a YAML recipe is hashed by its parsed content, so
  editing its comments changes nothing: ``input_sha256``);
- ``device``, ``date``, ``software``: where, when and with what it was measured;
- ``tolerance`` (relative) and ``varies_by_machine`` (keys such as ``minutes`` that are only comparable on the
  same machine): how a re-run is judged.

Prose quotes a result as a Markdown link whose text is the number and whose fragment is the key:
``[50.9](benchmarks/results/mini_sd_quick.json#rows.3.fid)`` (see ``sd_course/app/numbers.py``).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import shlex
import sys
from pathlib import Path

import accelerate
import diffusers
import torch
import yaml

from sd_course import __version__
from sd_course.core.shipped import SOURCE_ROOT

MACHINE_KEYS = ("minutes", "train_minutes", "seconds", "train_seconds", "runtime_s", "wall_s", "wall_clock_s",
                "images_per_s", "latency_s", "s_per_image", "ms_per_step", "speedup_vs_baseline", "gemm_fraction")


def file_sha256(path: str | Path) -> str:
    """sha256 of a file: recorded with every result so a number can be traced to the exact weights."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def input_sha256(path: str | Path) -> str:
    """The hash a result records for one of its inputs: sha256 of the file, except for a YAML recipe, whose parsed
    content is hashed (``yaml:`` + sha256 of its canonical JSON): a recipe's comments, which say what a run measured,
    can be corrected without making the results measured on it stale; any change to a value still does."""
    path = Path(path)
    if path.suffix in (".yaml", ".yml"):
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
        return "yaml:" + hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()
    return file_sha256(path)


def input_unchanged(path: str | Path, digest: str) -> bool:
    """Whether an input still is what a result recorded: its ``input_sha256``, or for a recipe recorded by its bytes
    (before recipes were hashed by content), those bytes. Each file is read once, a recipe's bytes only if needed."""
    if digest == input_sha256(path):
        return True
    return Path(path).suffix in (".yaml", ".yml") and digest == file_sha256(path)


def relative_to_root(path: str | Path, root: Path = SOURCE_ROOT) -> str:
    path = Path(path).resolve()
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def weight_files(path: str | Path) -> list[Path]:
    """The files a result depends on: a file itself, or every ``*.safetensors`` of a model folder."""
    path = Path(path)
    if path.is_file():
        return [path]
    return sorted(path.rglob("*.safetensors"))


def hash_inputs(paths, root: Path = SOURCE_ROOT) -> dict[str, str]:
    """``{path relative to the checkout: sha256}`` for each file of each path (folders: their weights)."""
    inputs = {}
    for path in paths:
        for f in weight_files(path):
            inputs[relative_to_root(f, root)] = input_sha256(f)
    return inputs


def cpu_name() -> str:
    name = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return name


def describe_device(device: str | torch.device = "cpu") -> str:
    """The machine in words: the GPU's name, or the CPU's model, its bf16 kind and torch's threads."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    kind = "AMX" if "amx_bf16" in flags else "AVX512-BF16" if "avx512_bf16" in flags else "no native bf16"
    return f"{cpu_name()}, {kind}, {torch.get_num_threads()} threads"


def software() -> str:
    return (f"python {platform.python_version()}, torch {torch.__version__}, diffusers {diffusers.__version__}, "
            f"accelerate {accelerate.__version__}, sd_course {__version__}")


def command_line(output: str | Path | None = None) -> list[str] | None:
    """This process's command, from the checkout's root, with the output file replaced by ``{output}``: ``python
    benchmarks/x.py ...`` for a script, ``sd-course ...`` for the CLI however it was started (the entry point at any
    path, ``python -m sd_course``). ``None`` when the result is written by a library call inside some other program
    (pytest, a notebook's kernel, ``python -c``): that program's command would not make the result again."""
    argv = [relative_to_root(sys.argv[0]) if Path(sys.argv[0]).exists() else Path(sys.argv[0]).name, *sys.argv[1:]]
    if Path(argv[0]).name == "sd-course" or argv[0] == "sd_course/__main__.py":
        argv = ["sd-course", *argv[1:]]
    elif argv[0].endswith(".py") and Path(sys.argv[0]).is_file() and not _installed(Path(sys.argv[0])):
        argv = ["python", *argv]
    else:
        return None
    if output is not None:
        target = Path(output).resolve()
        argv = ["{output}" if a.endswith(".json") and Path(a).resolve() == target else a for a in argv]
    return argv


def _installed(script: Path) -> bool:
    """Is this file part of an installed package (pytest's ``__main__.py``, ipykernel's launcher), not a script?"""
    return any(part in ("site-packages", "dist-packages") for part in script.resolve().parts)


def provenance(inputs=(), device: str | torch.device = "cpu", argv: list[str] | None = None,
               output: str | Path | None = None, tolerance: float = 0.05, varies_by_machine=MACHINE_KEYS,
               root: Path = SOURCE_ROOT) -> dict:
    """The ``"provenance"`` block of a result (see the module docstring)."""
    argv = argv if argv is not None else command_line(output)
    if output is not None and argv is not None:  # a command that writes a folder (--output_dir): that folder becomes {output_dir}
        folder = Path(output).resolve().parent
        argv = ["{output_dir}" if i > 0 and argv[i - 1] == "--output_dir" and Path(a).resolve() == folder else a
                for i, a in enumerate(argv)]
    return dict(id=Path(output).stem if output else None,
                argv=argv,
                inputs=hash_inputs(inputs, root),
                device=device if isinstance(device, str) and "," in device else describe_device(device),
                date=datetime.date.today().isoformat(),
                software=software(),
                tolerance=tolerance,
                varies_by_machine=list(varies_by_machine))


def write_result(output: str | Path, values: dict, inputs=(), device: str | torch.device = "cpu",
                 argv: list[str] | None = None, **options) -> Path:
    """Write ``values`` with their provenance to ``output`` (JSON; the file appears whole or not at all)."""
    output = Path(output)
    record = dict(provenance=provenance(inputs, device, argv, output, **options), **values)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    partial.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    os.replace(partial, output)
    return output


def format_argv(argv: list[str]) -> str:
    return shlex.join(argv)
