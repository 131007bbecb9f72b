"""Every recipe in training/configs/ is valid for the script its own header names: its keys are flags of that
objective and its values pass the objective's checks (the check that refuses an epsilon text model sampled from
pure noise among them), before anyone spends minutes training it.

    python -m pytest tests/test_recipes.py -q
"""

from __future__ import annotations

import re

import pytest

from conftest import REPO
from sd_course.gan.dcgan import GAN
from sd_course.latent.autoencoder import Autoencoder
from sd_course.latent.text_to_image import TextToImage
from sd_course.pixel.diffusion import PixelDiffusion
from sd_course.train.config import parse_args

SCRIPTS = {"train_unconditional.py": PixelDiffusion, "train_text_to_image.py": TextToImage, "train_gan.py": GAN,
           "train_vae.py": Autoencoder}
RECIPES = sorted((REPO / "training" / "configs").glob("*.yaml"))


def test_every_training_script_is_covered():
    for script, objective in SCRIPTS.items():
        assert f"objective_class={objective.__name__}" in (REPO / "training" / script).read_text()


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_recipe_parses_and_validates_for_its_script(recipe, tmp_path):
    named = re.findall(r"training/(train_\w+\.py)", recipe.read_text())
    assert named, f"{recipe.name} should say in its header which training script runs it"
    objective = SCRIPTS[named[0]]
    cfg = parse_args(["--config", str(recipe), "--output_dir", str(tmp_path / "run")], objective.config_class)
    cfg.validate()
    assert not (tmp_path / "run").exists()  # checking a recipe writes nothing
