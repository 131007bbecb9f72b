"""The Gradio demo (sd_course/app/demo.py): its functions, its Space layout, and the page itself in a real browser.

The browser test starts `sd-course demo` on 127.0.0.1 in a subprocess (as a user would) and drives Debian's
Chromium (/usr/bin/chromium, `apt-get install chromium`) with Playwright for Python; Playwright's own browser
download is never used. It skips, saying why, where gradio, playwright or chromium is missing.
Set SD_COURSE_UPDATE_SCREENSHOT=1 to also refresh docs/demo.png (the README's screenshot) from it.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import REPO

from sd_course.core.errors import InputError

CHROMIUM = os.environ.get("SD_COURSE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHIPPED = REPO / "pipelines" / "ddpm-mnist"

gradio = pytest.importorskip("gradio", reason="gradio is not installed: pip install -e '.[demo]'")


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory) -> Path:
    from tiny_pipelines import tiny_stable_diffusion

    folder = tiny_stable_diffusion(tmp_path_factory.mktemp("models") / "tiny-sd")
    # its card recommends a guidance scale, as `sd-course export` writes it: the demo starts its slider there
    (folder / "README.md").write_text("---\ninference:\n  parameters:\n    guidance_scale: 3.5\n---\n# tiny-sd\n")
    return folder


# ----------------------------------------------------------------------------------------------------------------
# without a browser
# ----------------------------------------------------------------------------------------------------------------


def test_demo_functions_and_their_errors(tiny_sd, tmp_path):
    from sd_course.app import demo

    store = demo.ModelStore(["analytic:mnist", str(tiny_sd)])
    assert store.kinds == {"analytic:mnist (exact denoiser)": "pixel", "tiny-sd": "text"}
    grid, info = demo.sample(store, "analytic:mnist (exact denoiser)", "dpm++", 5, 0, 4)
    assert grid.size == (232, 232) and "DPMSolverMultistepScheduler, 5 steps" in info
    grid, info = demo.sample(store, "tiny-sd", "euler", 2, 0, 2, prompt="a 3")
    assert grid.size == (232, 116) and "prompt 'a 3', guidance 3.5," in info  # the card's recommendation
    assert store.guidance("tiny-sd") == 3.5 and store.guidance("analytic:mnist (exact denoiser)") == 2.0
    assert "guidance 1.5," in demo.sample(store, "tiny-sd", "euler", 2, 0, 1, prompt="a 3", guidance_scale=1.5)[1]
    with pytest.raises(InputError, match="type a prompt"):
        demo.sample(store, "tiny-sd", "euler", 2, 0, 2, prompt="  ")
    with pytest.raises(InputError, match="--num_inference_steps must be at least 1"):
        demo.sample(store, "analytic:mnist (exact denoiser)", "ddim", 0, 0, 2)
    with pytest.raises(InputError, match="unknown scheduler"):
        demo.sample(store, "analytic:mnist (exact denoiser)", "nope", 5, 0, 2)
    with pytest.raises(InputError, match="at most 16 images"):
        demo.sample(store, "analytic:mnist (exact denoiser)", "ddim", 5, 0, 17)
    frames, gif, info = demo.denoise(store, "analytic:mnist (exact denoiser)", "ddim", 4, 0, 2, tmp_path)
    assert len(frames) == 4 and Path(gif).is_file() and "4 model calls" in info
    with pytest.raises(InputError, match="pixel-space models"):
        demo.denoise(store, "tiny-sd", "ddim", 4, 0, 2, tmp_path)
    filled, info = demo.inpaint_digit(store, "analytic:mnist (exact denoiser)", 0, "lower half", "ddim", 10, 0)
    assert filled.size == (3 * 172, 172) and "DDIMScheduler, 10 steps" in info
    with pytest.raises(InputError, match="stateless schedulers"):
        demo.inpaint_digit(store, "analytic:mnist (exact denoiser)", 0, "lower half", "dpm++", 10, 0)
    image, info = demo.forward(0, 999, "linear")
    assert image.size == (3 * 172, 172) and "t = 999" in info
    with pytest.raises(InputError, match="unknown beta schedule"):
        demo.forward(0, 10, "cosine")
    assert demo.mask_of("lower half", 28)[0, 0, 14:].all() and not demo.mask_of("lower half", 28)[0, 0, :14].any()


def test_write_space_runs_as_is(tmp_path):
    """The Space folder imports its own copy of sd_course and builds the demo from its own models/ (no checkout)."""
    from sd_course.app.cli import main

    space = tmp_path / "space"
    assert main(["demo", "--write_space", str(space), "--no_shipped", "--model", "analytic:mnist"]) == 0
    readme = (space / "README.md").read_text()
    assert readme.startswith("---\n") and "sdk: gradio" in readme and "app_file: app.py" in readme
    assert f"sdk_version: {gradio.__version__}" in readme
    requirements = (space / "requirements.txt").read_text().split()
    assert f"gradio=={gradio.__version__}" in requirements and any(r.startswith("diffusers") for r in requirements)
    assert (space / "sd_course" / "app" / "demo.py").is_file() and not list(space.rglob("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    check = subprocess.run([sys.executable, "-c", "import app, sd_course; print(sd_course.__file__); "
                            "print(type(app.demo).__name__)"], cwd=space, env=env, capture_output=True, text=True,
                           timeout=300)
    assert check.returncode == 0, check.stderr[-3000:]
    module_file, demo_type = check.stdout.split()[-2:]
    assert Path(module_file).is_relative_to(space) and demo_type == "Blocks"
    assert main(["demo", "--write_space", str(space)]) == 2  # never overwrites a folder


# ----------------------------------------------------------------------------------------------------------------
# in a real browser
# ----------------------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def demo_server(tiny_sd, tmp_path_factory):
    """`sd-course demo` with the shipped model and a tiny text-to-image model, on a free port of 127.0.0.1."""
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install playwright "
                                                      "(its browser download is not needed)")
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (or set SD_COURSE_CHROMIUM)")
    if not (SHIPPED / "model_index.json").is_file():
        pytest.skip("pipelines/ddpm-mnist is not in this checkout")
    port = _free_port()
    log = tmp_path_factory.mktemp("demo") / "demo.log"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "NO_PROXY": "127.0.0.1",
           "no_proxy": "127.0.0.1"}
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-m", "sd_course.app.cli", "demo", "--model", str(SHIPPED),
                                    "--model", str(tiny_sd), "--host", "127.0.0.1", "--port", str(port)],
                                   stdout=out, stderr=subprocess.STDOUT, env=env, cwd=str(REPO))
    url = f"http://127.0.0.1:{port}/"
    started = time.monotonic()
    try:
        while True:  # bounded wait for the server
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if process.poll() is not None or time.monotonic() - started > 120:
                    pytest.fail(f"the demo did not start in 120 s:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
        yield dict(url=url, startup_s=time.monotonic() - started, log=log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


def _choose(page, elem_id: str, option: str) -> None:
    page.click(f"#{elem_id} input")
    page.get_by_role("option", name=option, exact=True).click()


def _set_number(page, elem_id: str, value) -> None:
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def test_demo_in_a_browser(demo_server, tmp_path):
    import numpy as np
    from PIL import Image
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(demo_server["url"], wait_until="domcontentloaded", timeout=60_000)
            page.wait_for_selector("#sample-generate", timeout=60_000)

            # Sample: choose a scheduler, 4 images in 8 steps, Generate, wait for the grid.
            _choose(page, "sample-scheduler", "euler-a (EulerAncestralDiscreteScheduler)")
            _set_number(page, "sample-steps", 8)
            _set_number(page, "sample-num-images", 4)
            clicked = time.monotonic()
            page.click("#sample-generate")
            page.wait_for_function("(document.querySelector('#sample-info') || {}).innerText?.includes('image(s)')",
                                   timeout=180_000)
            first_image_s = time.monotonic() - clicked
            info = page.inner_text("#sample-info")
            assert "EulerAncestralDiscreteScheduler, 8 steps, seed 0" in info, info
            src = page.get_attribute("#sample-grid img", "src")
            grid = Image.open(io.BytesIO(page.request.get(src).body())).convert("L")
            assert grid.size == (232, 232)  # 2 x 2 cells of 28 x 4 pixels + 2-pixel frames
            pixels = np.asarray(grid, dtype=np.float32)
            cells = [pixels[r * 116 + 2:(r + 1) * 116 - 2, c * 116 + 2:(c + 1) * 116 - 2]
                     for r in (0, 1) for c in (0, 1)]
            for cell in cells:  # digits: white strokes on black, in every cell
                assert (cell > 200).mean() > 0.03 and (cell < 50).mean() > 0.5, (cell.mean(), cell.std())
            page.wait_for_timeout(500)  # the new image fades in
            page.screenshot(path=str(tmp_path / "demo-sample.png"))
            if os.environ.get("SD_COURSE_UPDATE_SCREENSHOT") == "1":  # the README's picture: 16 digits, dpm++
                _choose(page, "sample-scheduler", "dpm++ (DPMSolverMultistepScheduler)")
                _set_number(page, "sample-steps", 20)
                _set_number(page, "sample-num-images", 16)
                page.click("#sample-generate")
                page.wait_for_function("(document.querySelector('#sample-info') || {}).innerText?.includes("
                                       "'16 image(s)')", timeout=180_000)
                page.set_viewport_size({"width": 1200, "height": 640})
                page.wait_for_timeout(1500)  # the new image fades in
                page.screenshot(path=str(tmp_path / "demo-readme.png"))
                shutil.copy(tmp_path / "demo-readme.png", REPO / "docs" / "demo.png")

            # Forward process: filled in when the page loads.
            page.get_by_role("tab", name="Forward process").click()
            page.wait_for_selector("#forward-image img", timeout=60_000)

            # Denoising: a few DDIM steps, then the frame slider is live.
            page.get_by_role("tab", name="Denoising").click()
            page.click("#denoise-run")
            page.wait_for_selector("#denoise-frame img", timeout=120_000)
            page.wait_for_selector("#denoise-gif img", timeout=30_000)

            # An error the user can fix, in words on the page: a text-to-image model with an empty prompt.
            page.get_by_role("tab", name="Sample").click()
            _choose(page, "sample-model", "tiny-sd")
            page.wait_for_selector("#sample-prompt textarea", timeout=30_000)
            page.wait_for_function("document.querySelector('#sample-guidance input[type=number]')?.value === '3.5'",
                                   timeout=30_000)  # the slider moved to the guidance tiny-sd's card recommends
            page.click("#sample-generate")
            message = page.get_by_text("type a prompt: this is a text-to-image model")
            message.first.wait_for(timeout=60_000)
            assert message.first.is_visible()
            page.screenshot(path=str(tmp_path / "demo-error.png"))
        finally:
            browser.close()
    print(f"demo: server up in {demo_server['startup_s']:.1f} s, first image {first_image_s:.1f} s after Generate")
