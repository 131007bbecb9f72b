"""core: what every other layer stands on; it imports no other layer.

Read in this order: ``errors.py`` (the one exception for bad input), ``data.py`` (datasets -> uint8 tensors and
[-1, 1] images, labels), ``models.py`` (the named U-Net, VAE and text-encoder presets), ``schedulers.py`` (the 15
samplers by name, noise schedules), ``options.py`` (the inference options, declared once), ``device.py``,
``seeds.py``, ``kind.py`` (what a model kind is), ``images.py`` and ``plots.py`` (pictures from tensors and
numbers), ``checkpoints.py`` (atomic folders, checkpoints) and ``shipped.py`` (where the shipped files are).
"""
