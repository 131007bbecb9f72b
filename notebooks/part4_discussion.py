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
# # The discussion and the final reflection
#
# The lab's last hour: each discussion question with the experiment that gives its evidence. Parts 2 and 3 come
# first (this notebook uses the pretrained models only, so it also runs on its own). The long measurements behind
# the questions are run by the teacher; their results are in benchmarks/README.md and the figures in docs/figures.

# %% tags=["parameters"]
quick = False  # True: what CI runs, in under a minute; False: the lab's run (minutes: notebooks/README.md)
device = "auto"  # where models run: auto (a CUDA GPU, else Apple's mps, else the CPU), cpu, cuda or mps
output_dir = "lab"  # where the figures go, relative to the course folder

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

from IPython.display import Image, display

from sd_course.app.course import open_lab

out = open_lab(output_dir, device)  # work from the course folder (the lab's paths are relative to it)

# %% [markdown]
# ## How does iterative noise removal help?
#
# The pretrained model, the same seeds, DDIM with 1 step against many (`sd-course sample --scheduler ddim
# --num_inference_steps N`). The curve over 1 to 1,000 model calls is `docs/figures/fid_vs_steps.png`
# (`benchmarks/fid_vs_steps.py`, run by the teacher).

# %%
from sd_course.app.figures import write_samples
from sd_course.core.options import SampleOptions

for num_steps in (1, 10 if quick else 50):
    path = out / f"ddim_{num_steps}_steps.png"
    write_samples(options=SampleOptions(scheduler="ddim", num_inference_steps=num_steps, device=device),
                  num_images=16, output=str(path), show_progress=False)
    print(f"DDIM, {num_steps} step(s):")
    display(Image(str(path)))
display(Image("docs/figures/fid_vs_steps.png"))

# %% [markdown]
# **Q:** How does iterative noise removal help?

# %% [markdown]
# **A:** One step from pure noise can only return the network's best guess of x_0, the conditional mean: the same
# grey blur for every noise (Part 1's average again). Many small steps each resolve a little of the uncertainty,
# with the estimate re-made from a less noisy x_t every time, so the sample commits to one digit and ends sharp.
# The returns diminish: past a few dozen calls the score barely moves. The key: `sd_course/pixel/pipeline.py`.

# %% [markdown]
# ## How do diffusion models compare to GANs?
#
# The course's DCGAN baseline (`sd_course/gan/dcgan.py`), trained briefly on the bundled digits (`python
# training/train_gan.py --max_train_steps 1000 --output_dir lab/gan`), its samples, and its score next to the
# pretrained diffusion model's on the same held-out reference. The measured comparison at equal CPU-minutes is
# `docs/figures/gan_vs_diffusion.png` (`benchmarks/gan_vs_diffusion.py`, run by the teacher).

# %%
from sd_course.app.launch import main as train
from sd_course.evaluate.evaluation import evaluate
from sd_course.gan.dcgan import GAN

gan_dir = out / "gan"
if not (gan_dir / "train_summary.json").is_file():
    start = time.time()
    train(["--output_dir", str(gan_dir), "--max_train_steps", "30" if quick else "1000", "--logger", "none",
           "--checkpointing_steps", "0", "--save_model_epochs", "0"], objective_class=GAN, evaluate_factory=None)
    print(f"GAN trained in {(time.time() - start) / 60:.1f} min")
num_samples = 50 if quick else 500
reference = dict(reference="builtin:mnist-2k:train", num_samples=num_samples, print_table=False,
                 show_progress=False, device=device)
scores = {"the GAN": evaluate(model=str(gan_dir), **reference),  # one network call per digit
          "the pretrained diffusion model": evaluate(model="pipelines/ddpm-mnist", scheduler="dpm++",
                                                     num_inference_steps=10 if quick else 25, **reference)}
for name, s in scores.items():
    print(f"{name}: FID {s['fid_mnist_classifier']:.1f}, precision {s['precision_mnist_classifier']:.2f}, "
          f"recall {s['recall_mnist_classifier']:.2f} ({num_samples} samples)")
write_samples(model=str(gan_dir), options=SampleOptions(device=device), num_images=16, output=str(out / "gan.png"),
              show_progress=False)
display(Image(str(out / "gan.png")))
display(Image("docs/figures/gan_vs_diffusion.png"))

# %% [markdown]
# **Q:** How do diffusion models compare to GANs?

# %% [markdown]
# **A:** A GAN draws in one network call and can be sharp early, but its adversarial game is unstable and it tends to
# cover only part of the data (high precision, low recall: mode collapse). Diffusion trains on a plain regression
# loss that goes steadily down, covers every mode, and pays for it at sampling time with many network calls.
# Compare them at equal training compute, on several seeds, with precision and recall beside FID. The key:
# `sd_course/gan/dcgan.py`, `sd_course/evaluate/metrics.py`.

# %% [markdown]
# ## What happens if we change the noise schedule?
#
# The four schedules, trained with the same U-Net and budget and sampled with 5 to 50 steps (`python
# benchmarks/noise_schedules.py`, run by the teacher): docs/figures/noise_schedules.png. Part 2's step 2 drew the
# schedules themselves.

# %%
display(Image("docs/figures/noise_schedules.png"))

# %% [markdown]
# **Q:** What happens if we change the noise schedule?

# %% [markdown]
# **A:** The schedule decides which noise levels training sees how often and where the sampler's steps fall. A
# schedule that reaches pure noise late and keeps the image readable for longer (cosine) spends its steps where the
# digit is decided; one that sits at near-zero signal for hundreds of steps wastes training on noise-to-noise. A
# model must also be sampled with the schedule it was trained on: the network learned the noise levels of its own
# betas. The key: `sd_course/core/schedulers.py`.

# %% [markdown]
# ## Beyond random samples: inpainting
#
# A model trained only to generate fills the lower half of a digit it has never seen, keeping the upper half
# exactly (RePaint's replacement; `sd-course inpaint --mask lower_half`).

# %%
from sd_course.app.figures import write_inpainting
from sd_course.core.data import load_images
from sd_course.core.images import to_pil_images

digit = out / "digit.png"
to_pil_images(load_images("builtin:mnist-2k:train", num_images=1, show_progress=False)[0])[0].save(digit)
written = write_inpainting(image=str(digit), mask="lower_half", num_inference_steps=10 if quick else 50,
                           num_images=3, output=str(out / "filled.png"), figure=str(out / "inpaint.png"),
                           device=device, show_progress=False)
display(Image(str(out / "inpaint.png")))

# %% [markdown]
# **Q:** What are diffusion models used for beyond drawing random samples? How can a model that was only trained to
# generate fill in a missing part of an image?

# %% [markdown]
# **A:** Anything that constrains the sampling: inpainting and outpainting, editing from a partly noised image,
# super-resolution, conditioning on text or classes, and solving inverse problems with the learned prior. For
# inpainting, at every step the known pixels are replaced by the original noised to the current t, so the network
# only ever completes an x_t that is consistent with them. The key: `sd_course/pixel/inpaint.py`.

# %% [markdown]
# ## Final reflection
#
# Collect your numbers: Part 1's MSEs, your model's FID against the pretrained one's, the seconds of the samplers,
# what the inpainting kept. The optional derivations (forward process, ELBO, Tweedie, DDIM and the probability-flow
# ODE, classifier-free guidance, latent diffusion) go into a Word document: `sd-course derivations --output
# lab/derivations.docx` builds the teacher's copy.

# %% [markdown]
# **Q:** Final reflection: what makes diffusion models work, what do they cost, and where do they fall short?

# %% [markdown]
# **A:** They work because generation is split into many denoising problems that are each easy and trained by
# plain regression, with a closed-form forward process that makes every noise level available at any step. They
# cost many network calls per sample (fewer with good solvers, latents and distillation) and much training compute.
# They fall short where the data is small (they memorise), where evaluation is hard to make honest, and where the
# condition is weak (text the encoder never learned). The key: `sd_course/app/course.py`.
