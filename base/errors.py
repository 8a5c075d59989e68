"""The one exception type for problems a user can fix (bad input, bad archive, bad option), and
how names go into its one-line messages.

The CLI prints its message on one line and exits non-zero; any other exception is a bug.
"""


class TezipError(Exception):
    """A user-facing error: the message names the problem (file, frame, option)."""

    exit_code = 1


class OptionError(TezipError):
    """A bad command-line option or option combination (exit code 2, like argparse's errors)."""

    exit_code = 2


def printable(text):
    r"""`text` with its control and other non-printable characters escaped as repr() writes them
    (`\x1b`, `\u202e`): names from an archive or a folder are printed with this, so they can
    never send a terminal escape sequence or break a one-line message."""
    text = str(text)
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
