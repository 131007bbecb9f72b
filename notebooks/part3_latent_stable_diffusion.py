# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Part 3: latent space and a mini Stable Diffusion
#
# Stable Diffusion is Part 2's diffusion, run on the latents of an autoencoder and steered by text. The course ships
# both halves trained on digits: `pipelines/mini-sd-mnist` is a real `StableDiffusionPipeline` (its own
# `AutoencoderKL`, a small CLIP text encoder and a `UNet2DConditionModel`, all trained from scratch). This notebook
# looks at the latent space (`sd_course/latent/latent_space.py`), samples with and without guidance, reads the
# guidance loop (`sd_course/latent/guidance.py`) and trains a first mini Stable Diffusion of your own.

# %% tags=["parameters"]
quick = False  # True: what CI runs, in under a minute; False: the lab's run (minutes: notebooks/README.md)
device = "auto"  # where models run: auto (a CUDA GPU, else Apple's mps, else the CPU), cpu, cuda or mps
output_dir = "lab"  # where the figures go, relative to the course folder
run_dir = "runs/mini-sd-quick"  # where step 4 trains your mini Stable Diffusion

# %% [markdown]
# **Set-up.** In Jupyter on your own machine, install the course first as its README says; this cell then only
# checks. On Colab, clone the course into `/content/sd_course` first (`!git clone <your course's repository>
# sd_course`) and pick a GPU runtime; this cell then runs `pip install -e` on it, which keeps Colab's own PyTorch.

# %%
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("sd_course") is None:  # Colab: the course cloned into /content/sd_course
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", "/content/sd_course"], check=True)
    sys.path.insert(0, "/content/sd_course")  # an editable install is seen by a new kernel; this one needs the path

# %%
import inspect
import json
import time
from pathlib import Path

from IPython.display import Image, display

from sd_course.app.course import open_lab

out = open_lab(output_dir, device)  # work from the course folder (the lab's paths are relative to it)

# %% [markdown]
# ## 1. The latent space of the digit autoencoder
#
# A digit, its four 8x8 latent channels and the reconstruction; then a pixel cross-fade against a walk in latent
# space (`sd-course latents --vae pipelines/mini-sd-mnist/vae`). The full lesson also inverts digits with DDIM into
# the pixel model's x_T (leave `model=None` below; it takes a few minutes more).

# %%
from sd_course.latent.latent_space import write_latent_lesson

numbers = write_latent_lesson(vae_path="pipelines/mini-sd-mnist/vae", model="none" if quick else None,
                              output_dir=str(out / "latents"), num_eval=200 if quick else 1000, device=device)
print(f"{numbers['pixels_per_image']} pixels -> {numbers['latent_numbers_per_image']} latent numbers "
      f"({numbers['compression']:.0f}x fewer)")
print("reconstruction:", json.dumps(numbers["reconstruction"], indent=1))
display(Image(str(out / "latents" / "channels.png")))
display(Image(str(out / "latents" / "interpolation.png")))

# %% [markdown]
# **Q:** What is a latent space, and why diffuse there instead of in pixels?

# %% [markdown]
# **A:** The space of the autoencoder's codes: each digit becomes a few numbers from which the decoder rebuilds it,
# and nearby codes decode to similar digits (the latent walk morphs, the pixel cross-fade only superimposes). The
# diffusion U-Net then works on the small code instead of every pixel, which costs fewer operations per step,
# while the decoder takes care of the pixel-level detail. The key: `sd_course/latent/autoencoder.py`.

# %% [markdown]
# **Q:** Is x_T a latent code?

# %% [markdown]
# **A:** For a deterministic sampler (DDIM) x_T determines the image and DDIM can be run backwards to find the x_T
# of a real digit, so it acts as a code of the same size as the image; but it is not compressed and its
# neighbourhoods are not organised by meaning the way an autoencoder's are. The key:
# `sd_course/latent/latent_space.py`.

# %% [markdown]
# ## 2. Text to image, with and without guidance
#
# The same prompt and seeds, guidance scale 2 (the shipped model's best) against 1 (no guidance):
# `sd-course sample --model pipelines/mini-sd-mnist --prompt "a handwritten seven" --guidance_scale 2`.

# %%
from sd_course.app.figures import write_samples
from sd_course.core.options import SampleOptions

steps = 10 if quick else 25
for scale in (2.0, 1.0):
    options = SampleOptions(prompt="a handwritten seven", guidance_scale=scale, scheduler="dpm++",
                            num_inference_steps=steps, device=device)
    path = out / f"sevens_w{scale:g}.png"
    write_samples(model="pipelines/mini-sd-mnist", options=options, num_images=16, output=str(path),
                  show_progress=False)
    print(f"guidance_scale {scale:g}:")
    display(Image(str(path)))

# %% [markdown]
# ## 3. The loop that makes Stable Diffusion follow a prompt
#
# `StableDiffusionPipeline.__call__` does this, among much else; here it is written out, step by step (the code is
# the course's: the same images as diffusers' pipeline to 1e-4, `tests/latent/test_guidance.py`).

# %%
from sd_course.latent.guidance import guided_sample

print(inspect.getsource(guided_sample))

# %% [markdown]
# **Q:** How does the U-Net function as a denoiser within the Stable Diffusion framework? What does classifier-free
# guidance compute, and why does it work?

# %% [markdown]
# **A:** The same noise (or v) prediction as in Part 2, but on latents, and with cross-attention layers whose keys
# and values come from the text encoder's token vectors: each latent position attends to the words. Guidance runs
# the U-Net twice per step, with the prompt and with the empty caption that caption dropout trained, and
# extrapolates from the second towards the first by the guidance scale: the difference is what the prompt changes,
# and amplifying it trades diversity for fidelity to the prompt. The key: `sd_course/latent/text_to_image.py`.

# %% [markdown]
# ## 4. Train your own mini Stable Diffusion
#
# `training/configs/mini-sd-quick.yaml` on the bundled digits, the shipped autoencoder frozen (`accelerate launch
# training/train_text_to_image.py --config training/configs/mini-sd-quick.yaml --output_dir runs/mini-sd-quick`).
# Compare its minutes with Part 2's first pixel run. A folder that already holds a finished run is not trained
# again.

# %%
from sd_course.app.launch import main as train
from sd_course.latent.text_to_image import TextToImage

run = Path(run_dir)
if (run / "train_summary.json").is_file():
    print(f"{run} holds a finished run; not training again")
else:
    flags = ["--config", "training/configs/mini-sd-quick.yaml", "--output_dir", str(run), "--logger", "none"]
    if quick:  # a few steps: enough to see the loop run, not to draw digits
        flags += ["--max_train_steps", "10", "--train_batch_size", "32", "--save_images_epochs", "1",
                  "--checkpointing_steps", "0", "--ddpm_num_inference_steps", "5"]
    start = time.time()
    train(flags, objective_class=TextToImage)
    print(f"trained in {(time.time() - start) / 60:.1f} min")
write_samples(model=str(run), options=SampleOptions(prompt="a handwritten seven", guidance_scale=2.0,
                                                     scheduler="dpm++", num_inference_steps=steps, device=device),
              num_images=16, output=str(out / "my_sevens.png"), show_progress=False)
display(Image(str(out / "my_sevens.png")))
