"""The one exception type for problems a user can fix (bad input, bad archive, bad option).

The CLI prints its message on one line and exits non-zero; any other exception is a bug.
"""


class TezipError(Exception):
    """A user-facing error: the message names the problem (file, frame, option)."""

    exit_code = 1


class OptionError(TezipError):
    """A bad command-line option or option combination (exit code 2, like argparse's errors)."""

    exit_code = 2
