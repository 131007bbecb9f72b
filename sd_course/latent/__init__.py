"""latent: Part 3 of the lab, the "Stable" of Stable Diffusion: diffusion in an autoencoder's latent space, steered
by text. It builds on ``pixel`` (the same diffusion objective, in latents).

Read in this order: ``autoencoder.py`` (the AutoencoderKL objective, encode/decode, the scaling factor),
``latent_space.py`` (the latent-space lesson: channels, interpolation, DDIM inversion), ``text.py`` (captions and the
BPE tokenizer), ``text_to_image.py`` (the mini Stable Diffusion objective and its pipeline folder), ``guidance.py``
(classifier-free guidance, the sampling loop written out) and ``kind.py`` (its model kinds).
"""
