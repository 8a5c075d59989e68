"""Reading safely: only regular files are opened, and never in a way that can block (a FIFO
would wait forever for a writer, a device never ends)."""

import os
import stat

from base.errors import TezipError

_FILE_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


class NotARegularFile(TezipError):
    """open_regular's refusal; `what` says what the path is instead ("a FIFO (named pipe)", ...)."""

    def __init__(self, path, what):
        super().__init__(f"{path}: is {what}, not a regular file")
        self.path, self.what = path, what


def file_kind(mode):
    return next((what for test, what in _FILE_KINDS if test(mode)), "not a regular file")


def open_input(path, kind):
    """open_regular for an input the user named, its failures as one-line TezipErrors: `path: file
    not found`, `path: is a FIFO (named pipe), not <kind>`, `path: permission denied`, `path:
    cannot be read: <reason>`. kind: what the file should be ("an image file", "an HDF5 file")."""
    try:
        return open_regular(path)
    except FileNotFoundError:
        raise TezipError(f"{path}: file not found") from None
    except NotARegularFile as error:
        raise TezipError(f"{path}: is {error.what}, not {kind}") from None
    except PermissionError:
        raise TezipError(f"{path}: permission denied") from None
    except OSError as error:
        raise TezipError(f"{path}: cannot be read: {error.strerror or error}") from None


def open_regular(path):
    """Open `path` for reading when it is a regular file (or a link to one), never blocking: a
    FIFO would wait forever for a writer and a device never ends, so anything else raises
    NotARegularFile before it is opened for real, and the descriptor opened (non-blocking) is
    checked again in case the path changed meanwhile. Other failures raise OSError as open()
    does. Returns a binary file object."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise NotARegularFile(path, file_kind(st.st_mode))
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotARegularFile(path, file_kind(st.st_mode))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
