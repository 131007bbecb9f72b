"""publish: what leaves the machine.

Read in this order: ``cards.py`` (the one model-card builder: the Hub metadata of each kind, the limitations, the
facts read from a run's own files), ``export.py`` (``sd-course export``: a run's pipeline with its logs, plots and
card, written atomically) and ``hub.py`` (``sd-course push`` and ``--push_to_hub``: check, stage, upload).
"""
