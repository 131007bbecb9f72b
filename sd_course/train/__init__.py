"""train: the one training loop and its configuration; it imports only ``core``.

Read ``config.py`` (the ``TrainConfig`` dataclass whose fields are the flags, YAML recipes) then ``loop.py`` (the
accelerate loop: seeds, EMA, bf16, checkpoints with exact resume, logs). The loop knows no objective, no metric and
no Hub: an objective from a course part is handed to it (``sd_course/app/launch.py`` composes them).
"""
