"""sd_course: learn, train and use diffusion models the Hugging Face way.

Data flows one way through the package (see README.md):

    data.py -> models.py -> training.py -> a pipeline folder -> pipeline.py -> metrics.py / viz.py

and ``inversion.py`` is Part 1 of the lab, standing on its own.
"""

__version__ = "0.1.0"
