"""sd_course: learn, train and use diffusion models the Hugging Face way.

Data flows one way through the package (see README.md):

    data.py -> models.py -> training.py (+ the objectives: diffusion.py, autoencoder.py, text_to_image.py)
            -> a pipeline folder -> pipeline.py / latents.py -> metrics.py + evaluation.py / viz.py -> model_card.py

around them hub.py (push), demo.py (Gradio), course.py (questions, handout, derivations), cli.py (`sd-course`),
and ``inversion.py``, Part 1 of the lab, standing on its own.
"""

__version__ = "0.1.0"
