"""Exceptions that the CLI turns into a one-line message and exit code 2.

Everything a user can get wrong (a spec, a path, a plugin name, a corpus) raises a
``UserError``; anything else is a bug and exits 1.
"""


class UserError(Exception):
    """Bad input: the message is shown as is, on one line, with exit code 2."""

    exit_code = 2
    about_job = True  # the CLI prefixes the message with the job file it is about


class SpecError(UserError):
    """A job spec that does not parse or validate."""


class PluginError(UserError):
    """An unknown or conflicting plugin name, or a plugin that breaks its contract."""


class DataError(UserError):
    """A corpus that is missing, empty, or holds files that are not audio."""


class ModelError(UserError):
    """A backbone source that cannot be found or loaded."""


class NetworkError(UserError):
    """A download that cannot reach its host or is refused by it."""


class FolderInUse(UserError):
    """A job folder another run holds the lock on: the message names the folder and its
    holder, not the job file."""

    about_job = False
