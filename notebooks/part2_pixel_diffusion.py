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
# # Part 2: diffusion in pixel space
#
# The lab's two hours of diffusion, as docs/lab.md lays them out: the forward process, the noise schedule, the
# U-Net, training a model, the reverse process, samplers, and your model against the pretrained one. Each step
# calls the package (`sd_course/pixel/`, `sd_course/core/`); the `sd-course` command that does the same from a
# terminal is named beside it.

# %% tags=["parameters"]
quick = False  # True: what CI runs, in about a minute; False: the lab's run (minutes: notebooks/README.md)
device = "auto"  # where models run: auto (a CUDA GPU, else Apple's mps, else the CPU), cpu, cuda or mps
output_dir = "lab"  # where the figures go, relative to the course folder
run_dir = "runs/quick"  # where step 4 trains your model

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
import time
from pathlib import Path

from IPython.display import Image, display

from sd_course.app.course import open_lab

out = open_lab(output_dir, device)  # work from the course folder (the lab's paths are relative to it)

# %% [markdown]
# ## 1. The forward process
#
# Three real digits (rows) noised to each t (columns) in one jump,
# x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, with the same eps in every column
# (`sd-course forward`; the code: `sd_course/pixel/analytic.py`, `sd_course/core/plots.py`).

# %%
from sd_course.app.figures import write_forward, write_schedules

display(Image(write_forward(output=str(out / "forward.png"), timesteps="0,50,100,250,500,750,999")))

# %% [markdown]
# **Q:** What is the forward process? At which t can you no longer tell the digit?

# %% [markdown]
# **A:** A fixed Markov chain that mixes the image with Gaussian noise, with a closed form for any t in one jump
# (the formula above). Nothing in it is learned. With the linear schedule the digit is gone by about t = 500: the
# second half of the steps turns noise into noise.

# %% [markdown]
# ## 2. The noise schedule
#
# abar_t, beta_t (log scale) and the log-SNR of the four schedules diffusers offers (`sd-course schedules`), and the
# forward process again with the cosine schedule.

# %%
display(Image(write_schedules(output=str(out / "schedules.png"))))
display(Image(write_forward(output=str(out / "forward_cosine.png"), beta_schedule="squaredcos_cap_v2")))

# %% [markdown]
# **Q:** What does a noise schedule control? Linear, scaled_linear, squaredcos_cap_v2, sigmoid: how do they differ?

# %% [markdown]
# **A:** How fast the signal is destroyed: abar_t, the share of the image left at step t, hence the
# signal-to-noise ratio the network meets at each t. Read abar_t, not beta_t. The cosine schedule keeps the digit
# readable for longer and reaches pure noise only at the end; the linear one spends many steps at near-zero abar_t.
# The key: `sd_course/core/schedulers.py`.

# %% [markdown]
# ## 3. The U-Net as the denoiser
#
# The shipped model's architecture (`mnist-small`, `sd_course/core/models.py`): a `UNet2DModel` from diffusers.

# %%
from sd_course.core.models import build_unet

unet = build_unet("mnist-small", resolution=28, channels=1)
print(f"{sum(p.numel() for p in unet.parameters()):,} parameters")
for name in ("time_proj", "time_embedding", "down_blocks", "mid_block", "up_blocks"):
    part = getattr(unet, name)
    blocks = [type(b).__name__ for b in part] if isinstance(part, type(unet.down_blocks)) else [type(part).__name__]
    print(f"{name:>15}: {', '.join(blocks)}")

# %% [markdown]
# **Q:** Why a U-Net as the denoiser?

# %% [markdown]
# **A:** The output has the input's shape (a noise or v estimate per pixel), so the network must see the whole
# digit (the down path, down to 7x7) and still place every stroke to the pixel (the skip connections carry the
# fine detail across); the timestep embedding tells every block how noisy its input is. The key:
# `sd_course/core/models.py`.

# %% [markdown]
# ## 4. Train a model
#
# The README's first run: `training/configs/mnist-quick.yaml` on the 2,000 digits bundled with the package
# (`accelerate launch training/train_unconditional.py --config training/configs/mnist-quick.yaml --output_dir
# runs/quick` in a terminal). While it trains, read the loss in `sd_course/pixel/diffusion.py`. A folder that
# already holds a finished run is not trained again (delete it, or pick another `run_dir`, to train anew).

# %%
from sd_course.app.launch import main as train
from sd_course.pixel.diffusion import PixelDiffusion

run = Path(run_dir)
if (run / "train_summary.json").is_file():
    print(f"{run} holds a finished run; not training again")
else:
    flags = ["--config", "training/configs/mnist-quick.yaml", "--output_dir", str(run), "--logger", "none"]
    if quick:  # a few steps: enough to see the loop run and the images it saves, not to draw digits
        flags += ["--max_train_steps", "20", "--save_images_epochs", "1", "--save_model_epochs", "0",
                  "--checkpointing_steps", "0", "--eval_batch_size", "8", "--ddpm_num_inference_steps", "10"]
    start = time.time()
    train(flags, objective_class=PixelDiffusion)
    print(f"trained in {(time.time() - start) / 60:.1f} min")
display(Image(str(sorted((run / "samples").glob("epoch-*.png"))[-1])))

# %% [markdown]
# **Q:** What does the model actually learn?

# %% [markdown]
# **A:** To undo the forward process at every noise level at once: given x_t and t, it regresses a target that the
# forward jump defines (here v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0), which is equivalent to predicting the
# noise or the clean digit. Minimising that MSE makes its output the conditional mean given x_t, the "average"
# of Part 1. The key: `sd_course/pixel/diffusion.py`.

# %% [markdown]
# ## 5. The reverse process
#
# For each image a row of x_t and a row of the predicted x_0 (`sd-course trajectory`): first the exact denoiser of
# 16 digits (no training at all), then the pretrained model.

# %%
from sd_course.app.figures import write_trajectory

steps = 10 if quick else None
display(Image(write_trajectory(model="analytic:mnist", scheduler="ddim", num_inference_steps=steps, num_images=3,
                               output_dir=str(out), name="trajectory", device=device)["png"]))
display(Image(write_trajectory(model=None, scheduler="ddim", num_inference_steps=steps, num_images=4,
                               output_dir=str(out), name="pretrained", device=device)["png"]))

# %% [markdown]
# **Q:** What is the reverse process? What does one step of it do? Why does the predicted x_0 look like a blurry
# average early in sampling?

# %% [markdown]
# **A:** The forward chain run backwards, one learned Gaussian step at a time from pure noise. One step estimates
# x_0 from x_t, then moves to x_{t-1} between that estimate and x_t (adding fresh noise for DDPM, none for DDIM).
# Early on x_t says little, so the best estimate is the mean of many digits (a grey blur); as t falls it commits to
# one digit, then only sharpens strokes. The key: `sd_course/pixel/analytic.py`, `sd_course/pixel/pipeline.py`.

# %% [markdown]
# ## 6. Samplers
#
# The same model and the same seeds, three samplers (`sd-course sample --scheduler NAME`): what differs, and what
# does each cost in network calls?

# %%
from sd_course.app.figures import write_samples
from sd_course.core.options import SampleOptions

for scheduler, num_steps in (("dpm++", 25), ("euler-a", 50), ("ddim", 50)):
    num_steps = min(num_steps, 10) if quick else num_steps
    start = time.time()
    written = write_samples(options=SampleOptions(scheduler=scheduler, num_inference_steps=num_steps, device=device),
                            num_images=16, output=str(out / f"{scheduler}.png"), show_progress=False)
    print(f"{scheduler}, {num_steps} steps: {time.time() - start:.1f} s for 16 digits")
    display(Image(str(out / f"{scheduler}.png")))

# %% [markdown]
# **Q:** Why can a model trained with the DDPM schedule be sampled by Euler, Heun, DPM-Solver++? Deterministic or
# stochastic sampler?

# %% [markdown]
# **A:** The network estimates the score of the noised data at every noise level, and that one score defines both a
# reverse SDE and a deterministic probability-flow ODE; every sampler is a numerical solver of one of the two, so
# it needs only the score, not the training chain. Deterministic solvers (DDIM, DPM-Solver++) take large steps and
# map each noise to one image; stochastic ones (DDPM, Euler-ancestral, the SDE solvers) add noise back, which
# corrects earlier errors and, on this model, scores better at equal calls. The key: `sd_course/core/schedulers.py`.

# %% [markdown]
# ## 7. Your model against the pretrained one
#
# The same seeds through your model, two rungs of the pretrained model's epoch ladder and the pretrained model,
# scored against real digits by the shipped digit classifier's features (`sd-course compare`;
# `sd_course/evaluate/metrics.py`).

# %%
from sd_course.evaluate.evaluation import compare  # prints a row per model (a run: a row per epoch snapshot)

models = [str(run), "pipelines/ddpm-mnist-epoch1", "pipelines/ddpm-mnist-epoch10", "pipelines/ddpm-mnist"]
results = compare(models, num_samples=50 if quick else 300, scheduler="dpm++",
                  num_inference_steps=10 if quick else 25, reference="builtin:mnist-2k:train",
                  output_dir=str(out / "compare"), device=device, show_progress=not quick)
display(Image(str(out / "compare" / "compare_grid.png")))

# %% [markdown]
# **Q:** How does a model trained for fewer epochs compare with the pretrained one? How do we compare generators
# honestly?

# %% [markdown]
# **A:** Fewer epochs give blobs, then strokes, then digits: FID falls with training and then flattens, while the
# class balance evens out. An honest comparison scores every model with the same sampler, steps and seeds, on
# enough samples (FID is biased upward at small n: compare against the real-data floor at the same n), against
# held-out real images, and reports more than one number (precision and recall, the class histogram). The key:
# `sd_course/evaluate/metrics.py`.
