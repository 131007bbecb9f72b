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
# # Part 1: can a neural network learn the inverse of a function?
#
# *Introduction to Stable Diffusion Models*, the lab's first 45 minutes. A small MLP is trained to invert
# y = sin(x): first where sin is one-to-one (x in [-1, 1]), then where it is not (x in [-pi, pi]). What the network
# does in the second case is what a one-shot denoiser does, and why diffusion models take many small steps.
#
# The code this notebook calls is `sd_course/inversion/arcsin.py` (read it top to bottom: data, network, training,
# metrics, figures). `sd-course inversion --output_dir lab/inversion` runs the same thing from a terminal.

# %% tags=["parameters"]
quick = False  # True: 2 seeds instead of 5 (what CI runs); False: the lab's run (minutes: notebooks/README.md)
output_dir = "lab"  # where the figures go, relative to the course folder

# %% [markdown]
# **Set-up.** In Jupyter on your own machine, install the course first as its README says; this cell then only
# checks. On Colab, clone the course into `/content/sd_course` first (`!git clone <your course's repository>
# sd_course`); this cell then runs `pip install -e` on it, which keeps Colab's own PyTorch (the package asks for
# torch >= 2.13, which Colab has).

# %%
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("sd_course") is None:  # Colab: the course cloned into /content/sd_course
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", "/content/sd_course"], check=True)
    sys.path.insert(0, "/content/sd_course")  # an editable install is seen by a new kernel; this one needs the path

# %%
from pathlib import Path

from IPython.display import Image, display

from sd_course.app.course import open_lab

open_lab(output_dir)  # work from the course folder: the lab's paths are relative to it

# %% [markdown]
# ## 1. Train the nets
#
# The lab's network is 1-3-3-1 with ReLU, trained full-batch with Adam on 1,000 pairs (y, x), x ~ U[-1, 1],
# y = sin(x), once per seed. Two wider nets (1-32-32-1, ReLU and tanh) are trained on the same seeds to see what
# capacity changes. Then x ~ U[-pi, pi]: sin is no longer one-to-one.

# %%
from sd_course.inversion.arcsin import format_summary, run_inversion

folder = Path(output_dir) / "inversion"
metrics = run_inversion(output_dir=str(folder), seeds=(0, 1) if quick else (0, 1, 2, 3, 4))
print(format_summary(metrics))

# %%
display(Image(str(folder / "inverse_fit.png")))

# %% [markdown]
# **Q:** How well does the network learn the inverse?

# %% [markdown]
# **A:** Read the table above per seed, not only its mean: a seed whose ReLU units all die learns a constant
# (its MSE equals that of predicting 0), the others reach the floor a piecewise-linear curve with a few kinks can
# reach; the wide nets learn it on every seed. The key's full answer, with the five-seed numbers:
# `sd_course/inversion/arcsin.py` (`sd-course questions` lists where).

# %% [markdown]
# ## 2. Outside the training range

# %%
display(Image(str(folder / "extrapolation.png")))

# %% [markdown]
# **Q:** What happens outside [-1, 1] (and outside the training range)?

# %% [markdown]
# **A:** Near |y| = 1 arcsin steepens and the nets miss it; beyond |y| = 1 there is no arcsin, yet every net still
# answers, with no sign of doubt: the ReLU nets continue as straight lines, the tanh nets go flat. A network gives
# an output for any input; only the data says where that output means something.

# %% [markdown]
# ## 3. When the function is not invertible

# %%
display(Image(str(folder / "noninvertible.png")))

# %% [markdown]
# **Q:** What does this imply for inverting more complex functions?

# %% [markdown]
# **A:** With two preimages for each y, the MSE-optimal answer is their average E[x | y] (the flat lines at
# ±pi/2 in the figure), which is not a preimage: sin(pi/2) = 1, not y. Blurring, downsampling and adding noise are
# many-to-one too, so a one-shot regression onto them returns the blurry average of what could have been.

# %% [markdown]
# **Q:** How does function inversion relate to diffusion models?

# %% [markdown]
# **A:** Noising is the function to invert, and it is many-to-one in the extreme: a denoiser trained with MSE learns
# E[x_0 | x_t], the average of all images that could have produced x_t, as the net above learns E[x | y]. Diffusion
# models invert in many small steps, each nearly one-to-one, and sample at each step instead of averaging, so they
# end on one sharp image. Part 2 shows that average (the predicted x_0) early in sampling.

# %% [markdown]
# The whole report of this run, with every number, is `lab/inversion/report.md`; docs/inversion.md explains the
# figures at length.

# %%
print((folder / "report.md").read_text()[:1500])
