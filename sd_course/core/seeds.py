"""Seeds: every random draw of sampling is a function of the run's seed and the image's index, never of the batch."""

from __future__ import annotations

import hashlib


def image_seed(seed: int, index: int) -> int:
    """The seed of image ``index`` of a run with ``seed``: images do not depend on the batch they were made in.

    torch's CPU generator keeps only the low 32 bits of a seed, so ``seed * 2**32 + index`` would ignore ``seed``.
    Instead the run's seed is hashed to a 32-bit start and images count up from it: within a run no two images
    share a seed (up to 2**32 images), and two runs overlap only if their starts fall within N of each other.
    """
    start = int.from_bytes(hashlib.sha256(str(int(seed)).encode()).digest()[:4], "little")
    return (start + int(index)) % 2**32
