"""The one exception type for bad user input.

Every module raises :class:`InputError` when what the user gave (a path, a column, a scheduler name, a
resolution, ...) cannot work, with a message that names the problem *and* the fix. The CLI prints it as one
line, without a traceback. It subclasses ``ValueError`` so plain Python callers can catch it as usual.
"""


class InputError(ValueError):
    """Bad user input; the message says what is wrong and how to fix it."""
