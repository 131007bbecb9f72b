"""The one exception type for bad user input.

Every module raises :class:`InputError` when what the user gave (a path, a column, a scheduler name, a
resolution, ...) cannot work, with a message that names the problem *and* the fix. The CLI prints it as one
line, without a traceback. It subclasses ``ValueError`` so plain Python callers can catch it as usual.
"""


class InputError(ValueError):
    """Bad user input; the message says what is wrong and how to fix it."""


def check_positive_int(value, name: str) -> int:
    """A whole number >= 1 given as ``--name``, else an InputError naming the flag."""
    if isinstance(value, bool) or not isinstance(value, int) and not (hasattr(value, "__int__") and
                                                                    int(value) == value):
        raise InputError(f"--{name} must be a whole number, got {value!r}")
    if int(value) <= 0:
        raise InputError(f"--{name} must be at least 1, got {value}")
    return int(value)
