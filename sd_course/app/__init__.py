"""app: what people run; nothing imports it.

``cli.py`` (the ``sd-course`` command: arguments only, and the one place that defers imports so ``--help`` is fast),
``launch.py`` (what ``training/*.py`` runs: an objective + the loop + the push), ``figures.py`` (the picture commands:
sample, trajectory, forward, schedules, inpaint), ``demo.py`` (the Gradio app) and ``course.py`` (the questions
index, the handout, the derivations).
"""
