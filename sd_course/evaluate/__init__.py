"""evaluate: honest offline metrics, above the model kinds.

Read in this order: ``classifier.py`` (the shipped MNIST classifier whose features the metrics use), ``metrics.py``
(FID, KID, precision/recall, class histograms, the real-data floor) and ``evaluation.py`` (``sd-course evaluate`` and
``compare``: sample any model kind with the same seeds, score it, the epoch ladder; the metrics hook of training).
"""
