"""inversion: Part 1 of the lab, on its own: can a small MLP learn x = arcsin(y), the inverse of y = sin(x)?

``arcsin.py`` holds the experiment, its figures and the lab's questions; it imports only ``core``
(``sd-course inversion --output_dir figures/inversion``). Its lesson, that a regression of a many-to-one map learns
the conditional mean, is why diffusion denoises in many small steps (Part 2).
"""
