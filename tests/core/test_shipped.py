"""The shipped pretrained pipelines: found in a source checkout and in an installed wheel, usable with no --model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from sd_course.core import shipped
from sd_course.pixel.pipeline import default_model_path

SHIPPED = REPO / "pipelines" / "ddpm-mnist"
needs_shipped_model = pytest.mark.skipif(not (SHIPPED / "model_index.json").is_file(),
                                         reason="pipelines/ddpm-mnist is not in this checkout")


def test_installed_data_folder_is_found(monkeypatch, tmp_path):
    """No checkout: the pipeline installed as data files under <prefix>/share/sd_course/ is the default model."""
    monkeypatch.delenv("SD_COURSE_PRETRAINED", raising=False)
    monkeypatch.setattr(shipped, "SOURCE_ROOT", tmp_path / "no-checkout")
    prefix = tmp_path / "env"
    monkeypatch.setattr(sys, "prefix", str(prefix))
    monkeypatch.setattr(shipped.sysconfig, "get_path", lambda name: str(prefix))
    folder = prefix / "share" / "sd_course" / "pipelines" / "ddpm-mnist"
    folder.mkdir(parents=True)
    (folder / "model_index.json").write_text("{}")
    assert default_model_path() == str(folder)
    assert shipped.find_shipped("pipelines/no-such-model") is None


@needs_shipped_model
def test_shipped_pipelines_load_with_plain_diffusers():
    from diffusers import DiffusionPipeline

    for name in ("ddpm-mnist", "ddpm-mnist-epoch10", "ddpm-mnist-epoch1"):
        pipe = DiffusionPipeline.from_pretrained(str(REPO / "pipelines" / name))
        assert type(pipe).__name__ == "DDPMPipeline"
        assert (pipe.unet.config.in_channels, pipe.unet.config.sample_size) == (1, 28)
        assert (REPO / "pipelines" / name / "README.md").is_file()


def _setuptools_at_least(*version) -> bool:
    try:
        import setuptools
    except ImportError:
        return False
    return tuple(int(p) for p in setuptools.__version__.split(".")[:2]) >= version


def _outer_site_packages() -> list[str]:
    """The site-packages folders of the Python running the tests, in the order of its sys.path."""
    import site

    folders = {os.path.realpath(p) for p in site.getsitepackages()}
    if site.ENABLE_USER_SITE:
        folders.add(os.path.realpath(site.getusersitepackages()))
    on_path = [os.path.realpath(p) for p in sys.path if p]
    return [p for p in dict.fromkeys(on_path) if p in folders and Path(p).is_dir()]


@pytest.mark.slow
@needs_shipped_model
def test_sample_without_model_from_an_installed_wheel(tmp_path):
    """Build the wheel, install it into a fresh venv (no source checkout on its path) and run the newcomer's first
    command, `sd-course sample` with no --model, from an unrelated folder."""
    wheels = tmp_path / "wheels"
    # Build with this environment's setuptools when it is recent enough (no download); else pip fetches the
    # build requirements of pyproject.toml from the package index.
    no_isolation = ["--no-build-isolation"] if _setuptools_at_least(70, 1) else []
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", *no_isolation, "-q",
                            "-w", str(wheels), str(REPO)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next(wheels.glob("sd_course-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    # The inner venv borrows torch, diffusers, ... from the environment running pytest (a venv, a conda env or the
    # system Python alike), through a .pth file listing that environment's site-packages. `venv
    # --system-site-packages` would not do: from inside a venv it points at the *base* interpreter's packages.
    # Plain path lines are only appended to sys.path (the outer folders' own .pth files, such as the editable
    # install of this checkout, are not run), after the inner site-packages where the wheel goes: the wheel wins.
    inner_site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                     capture_output=True, text=True, check=True).stdout.strip())
    (inner_site / "outer_environment.pth").write_text("".join(f"{folder}\n" for folder in _outer_site_packages()))
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                              "--ignore-installed", "--no-index", "-q", str(wheel)],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-2000:]

    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SD_COURSE_PRETRAINED")}
    where = subprocess.run([str(python), "-c", "import sd_course, sd_course.pixel.pipeline as p; "
                            "print(sd_course.__file__); print(p.default_model_path())"],
                           capture_output=True, text=True, cwd=work, env=env, timeout=300)
    assert where.returncode == 0, where.stderr[-2000:]
    module_file, model_path = where.stdout.split()
    assert Path(module_file).is_relative_to(venv) and Path(model_path).is_relative_to(venv)
    sample = subprocess.run([str(venv / "bin" / "sd-course"), "sample", "--num_images", "2", "--scheduler", "ddim",
                             "--num_inference_steps", "3", "--output", "grid.png"],
                            capture_output=True, text=True, cwd=work, env=env, timeout=300)
    assert sample.returncode == 0, sample.stderr[-2000:]
    assert (work / "grid.png").stat().st_size > 0
