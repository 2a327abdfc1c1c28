"""Errors trainwise raises on purpose.

SetupError means the user's input cannot be used (exit code 2 on the command line); its message
names the file, function, sample index or layer and what was expected.
"""


class TrainwiseError(Exception):
    """Base class of the errors trainwise raises on purpose."""


class SetupError(TrainwiseError):
    """The user's setup (file, model, data, loss) cannot be used as given."""
