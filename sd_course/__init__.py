"""sd_course: learn, train and use diffusion models the Hugging Face way.

The package is laid out by layer and by course part; each layer imports only the layers listed before it
(``tests/test_layout.py`` checks it), so it reads top to bottom:

    core/       errors, data, model presets, schedulers and their names, inference options, devices, seeds,
                model-kind interface, images and plots, atomic files, shipped files
    train/      the config dataclass and the one accelerate loop (it knows no objective, no metric, no Hub)
    inversion/  Part 1: can an MLP learn arcsin?                      (stands on core only)
    pixel/      Part 2: the DDPM objective, sampling with 15 schedulers, inpainting, the analytic denoiser
    latent/     Part 3: the autoencoder, captions + tokenizer, the mini Stable Diffusion, guidance written out,
                the latent-space lesson                                (builds on pixel)
    gan/        the GAN baseline
    kinds.py    the registry of model kinds: every command asks here what a folder is
    evaluate/   the shipped digit classifier, FID / KID / precision / recall, evaluate and compare
    publish/    model cards (one builder), export, push to the Hub
    app/        the CLI, the training entry point, figures, the Gradio demo, the course tools

Data flows one way: datasets -> core -> train (+ an objective of pixel / latent / gan) -> a standard diffusers
folder -> kinds -> sampling -> evaluate -> publish / app.
"""

__version__ = "0.1.0"
