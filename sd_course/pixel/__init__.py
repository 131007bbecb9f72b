"""pixel: Part 2 of the lab, diffusion in pixel space.

Read in this order: ``diffusion.py`` (the DDPM objective: the forward process and the loss, plugged into the one
loop), ``analytic.py`` (the exact denoiser of Gaussian-mixture data, the best any network can do), ``pipeline.py``
(sampling, correct with all 15 compatible schedulers; the reverse process step by step), ``predictions.py`` (what
the network predicts at each t, and its loss per t against the exact denoiser of the training set), ``inpaint.py``
(RePaint) and ``kind.py`` (the model kinds of this part: a DDPM pipeline folder, an analytic model).
"""
