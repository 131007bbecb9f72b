"""gan: the GAN baseline, for the lab's question "how do diffusion models compare to GANs?".

``dcgan.py`` holds the DCGAN generator and discriminator and the objective that returns both players' losses, trained
by the same loop as every model; ``kind.py`` says how a generator folder is recognised, loaded and sampled.
"""
