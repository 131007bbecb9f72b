"""The registry of model kinds: every command and the demo ask here what a ``--model`` is, and nowhere else.

    python -c "from sd_course.kinds import kind_of; print(kind_of('pipelines/mini-sd-mnist').name)"   # text-to-image

Each entry is defined in the folder of its course part (``pixel/kind.py``, ``latent/kind.py``, ``gan/kind.py``);
:class:`sd_course.core.kind.ModelKind` says what an entry holds. The first kind whose ``recognise`` accepts a model
wins; a Hub id that no local rule claims is taken as a DDPM pipeline (its loader checks it when it downloads it).
Adding a kind of model = its folder + one line in ``KINDS``.
"""

from __future__ import annotations

from pathlib import Path

from sd_course.core.errors import InputError
from sd_course.core.kind import ModelKind
from sd_course.gan.kind import GAN
from sd_course.latent.kind import AUTOENCODER, TEXT_TO_IMAGE
from sd_course.pixel.kind import ANALYTIC, DDPM
from sd_course.pixel.pipeline import check_pipeline_folder, default_model_path

KINDS: tuple[ModelKind, ...] = (ANALYTIC, GAN, AUTOENCODER, TEXT_TO_IMAGE, DDPM)


def resolve_model(model: str | None) -> str:
    """``--model`` as given, or the default: ``$SD_COURSE_PRETRAINED``, else the shipped ``pipelines/ddpm-mnist``."""
    return str(model) if model is not None else default_model_path()


def kind_of(model: str | None) -> ModelKind:
    """The kind of ``model`` (None: the default model); InputError naming the fix for a folder of no known kind."""
    model = resolve_model(model)
    for kind in KINDS:
        if kind.recognise(model):
            return kind
    check_pipeline_folder(Path(model).expanduser())  # says what is wrong: missing, a file, no model_index.json, ...
    raise InputError(f"{model!r} is no kind of model sd_course knows ({', '.join(k.name for k in KINDS)})")


def kind_named(name: str) -> ModelKind:
    for kind in KINDS:
        if kind.name == name:
            return kind
    raise InputError(f"no model kind {name!r}; the kinds are {[k.name for k in KINDS]}")
