"""Where the files shipped with sd_course live: the pretrained pipelines and the model-card templates.

In a source checkout they are the top-level folders ``pipelines/`` and ``model_cards/`` next to ``sd_course/``.
A wheel (``pip install sd_course`` or ``pip install .``) installs the same folders as data files under
``<prefix>/share/sd_course/`` (see ``[options.data_files]`` in setup.cfg), where ``<prefix>`` is the environment
(``sys.prefix``, a venv) or the user base of ``pip install --user``. :func:`find_shipped` looks in that order.

    >>> from sd_course.core.shipped import find_shipped
    >>> find_shipped("pipelines/ddpm-mnist")          # a Path, or None when it is not there
"""

from __future__ import annotations

import site
import sys
import sysconfig
from pathlib import Path

SOURCE_ROOT = Path(__file__).resolve().parents[2]  # the checkout: sd_course/, pipelines/, model_cards/, ...
DATA_SUBDIR = Path("share") / "sd_course"  # where setup.cfg's data_files put them in an installed environment


def search_roots() -> list[Path]:
    """Folders that may hold ``pipelines/`` and ``model_cards/``, most specific first."""
    roots = [SOURCE_ROOT]
    prefixes = [sysconfig.get_path("data"), sys.prefix, getattr(site, "USER_BASE", None)]
    for prefix in prefixes:
        if prefix:
            root = Path(prefix) / DATA_SUBDIR
            if root not in roots:
                roots.append(root)
    return roots


def find_shipped(relative: str) -> Path | None:
    """The first existing ``<root>/<relative>`` of :func:`search_roots`, else None."""
    for root in search_roots():
        if (root / relative).exists():
            return root / relative
    return None
