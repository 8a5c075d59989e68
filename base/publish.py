"""Writing output safely. A run locks its OUT_DIR against other runs (OutputFolder), creates every
file it writes itself (exclusively, under a short random `*.tezip-partial` name, never through a
symbolic link) and publishes them all together or not at all: renamed only when every one is
complete and synced, with Ctrl-C held, rolled back if a rename fails. check_output_folder refuses a
bad OUT_DIR before any work; the record of signals makes an interrupted run publish nothing."""

import contextlib
import errno
import fcntl
import os
import secrets
import signal
import stat
import threading
from pathlib import Path

from base.errors import TezipError, printable
from base.files import file_kind

TMP_SUFFIX = ".tezip-partial"
# The lock of a run writing into an output folder (a leftover of a killed run is stale, not
# binding: flock locks end with their process).
LOCK_NAME = ".tezip-lock" + TMP_SUFFIX


def check_output_folder(out_dir, input_dir, overwrite, what="IMAGE_DIR", label="OUT_DIR"):
    """Refuse a bad output folder before any work (one-line TezipError): the input folder `what`
    itself, inside it or around it, a file, non-empty without `overwrite`, not writable or not
    creatable. `label` is how messages name it (OUT_DIR; MODEL_DIR for training)."""
    if Path(out_dir).is_symlink() and not Path(out_dir).exists():
        raise TezipError(f"{label} {out_dir} is a symbolic link to {os.readlink(out_dir)}, which does not exist")
    out, inp = Path(out_dir).resolve(), Path(input_dir).resolve()
    if out == inp:
        raise TezipError(f"{label} {out_dir} is the same folder as {what}")
    if inp in out.parents:
        raise TezipError(f"{label} {out_dir} lies inside {what} {input_dir}")
    if out in inp.parents:
        raise TezipError(f"{what} {input_dir} lies inside {label} {out_dir}")
    if out.exists() and not out.is_dir():
        raise TezipError(f"{label} {out_dir} exists and is not a folder")
    if out.is_dir():
        try:  # temporary files an interrupted run left behind do not count (they are cleaned up)
            used = any(not is_partial(e) for e in out.iterdir())
        except OSError as e:
            raise TezipError(f"{label} {out_dir} cannot be read ({e.strerror or e})") from None
        if used and not overwrite:
            raise TezipError(f"{label} {out_dir} is not empty (use --overwrite to replace its contents)")
        if not os.access(out, os.W_OK | os.X_OK):
            raise TezipError(f"{label} {out_dir} is not writable")
    else:  # checked now, not after minutes of work: the folder must be creatable
        parent = next(p for p in out.parents if p.exists())
        if not parent.is_dir():
            raise TezipError(f"{label} {out_dir} cannot be created: {parent} is not a folder")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise TezipError(f"{label} {out_dir} cannot be created: {parent} is not writable")


def is_partial(path):
    """A temporary file of ours (or the lock of a run), as an interrupted run may leave them."""
    return Path(path).name.endswith(TMP_SUFFIX)


def make_output_folder(folder, label="OUT_DIR"):
    """Create folder (and missing parents); returns the folders created, for remove_created."""
    folder = Path(folder)
    created = [p for p in [folder, *folder.parents] if not p.exists()][::-1]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        remove_created(created)
        raise TezipError(f"cannot create {label} {folder} ({e.strerror or e})") from None
    return created


def remove_created(created):
    """After a failed write: remove the folders make_output_folder created, if they are empty."""
    for p in reversed(created):
        try:
            p.rmdir()
        except OSError:
            return


# Signals the command line's handler has seen (tezip.main). The handler raises KeyboardInterrupt,
# but an exception raised inside a callback of a library (a garbage-collection hook, a worker
# thread) can be swallowed there; publishing checks this record too, so an interrupted run never
# publishes.
signals_received = []


def note_signal(signum):
    signals_received.append(signum)


# Set once the run's outputs are all published and its last line (a sequence's summary, a batch's
# table) printed or about to be: the command line's handler then ignores Ctrl-C, which can no longer
# stop anything (a local Dask cluster still closing takes seconds) and must not turn a finished run
# into "interrupted" (exit 130).
run_finished = []


def note_run_finished():
    run_finished.append(True)


@contextlib.contextmanager
def deferred_interrupts():
    """Hold Ctrl-C (SIGINT) and SIGTERM while the block runs, then deliver them: the renames that
    publish finished files happen all together or not at all. (SIGKILL cannot be held.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received, saved = [], {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(sig)
        if handler is None:  # installed outside Python: leave it alone
            continue
        saved[sig] = handler
        signal.signal(sig, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        for sig in received:
            signal.raise_signal(sig)


# --- writing: one locked output folder per run ------------------------------------------------------


class OutputFolder:
    """OUT_DIR for the length of one run (a context manager).

    Entering creates the folder when missing, opens it once (every later step works relative to
    that descriptor), locks it against other TEZip runs (flock on LOCK_NAME: a second run into the
    same folder is refused with one line; the lock of a killed run is stale and taken over),
    checks under the lock that it is still empty unless `overwrite`, and removes what a killed run
    left (*.tezip-partial entries: links and other odd entries are unlinked themselves, never
    followed). publish() is the only way files get in. Leaving releases the lock and, if nothing
    was published, removes the folders entering created. `label` is how messages name the folder
    (OUT_DIR; MODEL_DIR for training)."""

    def __init__(self, folder, overwrite=False, label="OUT_DIR"):
        self.path = Path(folder)
        self.overwrite, self.label = overwrite, label
        self.created, self.fd, self.lock_fd, self.published = [], None, None, False

    def __enter__(self):
        try:
            # Ctrl-C is held while the folder is made and locked (and while leaving, below): an
            # interrupt between creating the lock file and holding it would leave it behind.
            with deferred_interrupts():
                self.created = make_output_folder(self.path, self.label)
                try:
                    self.fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                except OSError as e:
                    raise TezipError(f"{self.label} {self.path} cannot be opened ({e.strerror or e})") from None
                self._lock()
            try:
                entries = os.listdir(self.fd)
            except OSError as e:
                raise TezipError(f"{self.label} {self.path} cannot be read ({e.strerror or e})") from None
            if not self.overwrite and any(not is_partial(e) for e in entries):
                raise TezipError(f"{self.label} {self.path} is not empty (use --overwrite to replace its contents)")
            self._remove_leftovers(entries)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        with deferred_interrupts():
            if self.lock_fd is not None:
                try:
                    mine, there = os.fstat(self.lock_fd), os.stat(LOCK_NAME, dir_fd=self.fd, follow_symlinks=False)
                    if (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino):
                        os.unlink(LOCK_NAME, dir_fd=self.fd)
                except OSError:
                    pass
                os.close(self.lock_fd)  # releases the flock
                self.lock_fd = None
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None
            if not self.published:
                remove_created(self.created)
        return False

    def _unlink(self, name):
        try:
            os.unlink(name, dir_fd=self.fd)
        except OSError:
            pass

    def _lock(self):
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        for _ in range(100):
            try:
                fd = os.open(LOCK_NAME, flags, 0o644, dir_fd=self.fd)
            except OSError as e:
                if e.errno == errno.ELOOP:  # a link where our lock belongs: removed, never followed
                    self._unlink(LOCK_NAME)
                    continue
                raise TezipError(f"cannot lock {self.label} {self.path} ({e.strerror or e})") from None
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):  # a FIFO or device planted there: removed
                os.close(fd)
                self._unlink(LOCK_NAME)
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                holder = os.pread(fd, 24, 0).decode("ascii", "replace").strip()
                os.close(fd)
                if e.errno in (errno.EWOULDBLOCK, errno.EACCES):
                    who = f" (process {holder})" if holder.isdigit() else ""
                    raise TezipError(f"{self.label} {self.path} is in use by another TEZip run{who}: wait until it has "
                                     f"finished, or choose another {self.label}") from None
                raise TezipError(f"cannot lock {self.label} {self.path} ({e.strerror or e})") from None
            try:
                there = os.stat(LOCK_NAME, dir_fd=self.fd, follow_symlinks=False)
            except FileNotFoundError:
                there = None
            if there is None or (there.st_dev, there.st_ino) != (st.st_dev, st.st_ino):
                os.close(fd)  # the run that held it has just removed it: lock afresh
                continue
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            self.lock_fd = fd
            return
        raise TezipError(f"cannot lock {self.label} {self.path} (its lock file keeps changing)")

    def _remove_leftovers(self, entries):
        for name in entries:
            if not is_partial(name) or name == LOCK_NAME:
                continue
            try:
                if not stat.S_ISDIR(os.stat(name, dir_fd=self.fd, follow_symlinks=False).st_mode):
                    os.unlink(name, dir_fd=self.fd)
            except FileNotFoundError:
                pass
            except OSError as e:
                raise TezipError(f"cannot clean up {self.path} ({e.strerror or e})") from None

    def _free_name(self):
        while True:
            name = f"{secrets.token_hex(6)}{TMP_SUFFIX}"
            try:
                os.stat(name, dir_fd=self.fd, follow_symlinks=False)
            except FileNotFoundError:
                return name

    def new_file(self, track):
        """A new empty file of this run under a fresh short temporary name, created exclusively
        (never an existing file, never through a link); its name is appended to `track` as soon
        as it exists. Returns a binary file object."""
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        while True:
            name = f"{secrets.token_hex(6)}{TMP_SUFFIX}"
            # Ctrl-C held from creating the file until it is tracked: an interrupt in between left
            # an untracked temporary file behind (test_interrupt caught it once)
            with deferred_interrupts():
                try:
                    fd = os.open(name, flags, 0o666, dir_fd=self.fd)
                except FileExistsError:
                    continue
                track.append(name)
            f = os.fdopen(fd, "w+b")
            f.raw.name = str(self.path / name)  # for libraries that want a name (tifffile); never reopened
            return f

    def _check_targets(self, names):
        """Every final name must be free or a regular file (replaced): a folder, link or other entry
        in the way stops the run before anything is renamed."""
        for name in names:
            try:
                mode = os.stat(name, dir_fd=self.fd, follow_symlinks=False).st_mode
            except FileNotFoundError:
                continue
            if stat.S_ISREG(mode):
                continue
            what = "a symbolic link" if stat.S_ISLNK(mode) else file_kind(mode)
            raise TezipError(f"cannot write {printable(name)} into {self.path}: {what} of that name is in the way "
                             f"(only regular files are replaced); nothing was written")

    def _rename_all(self, temps, names):
        """Rename every temporary file to its final name; files replaced are first moved aside,
        and should any rename fail, those placed are removed and those moved aside put back."""
        aside, placed = [], []
        d = dict(src_dir_fd=self.fd, dst_dir_fd=self.fd)
        try:
            for tmp, name in zip(temps, names):
                try:
                    os.stat(name, dir_fd=self.fd, follow_symlinks=False)
                except FileNotFoundError:
                    pass
                else:
                    spare = self._free_name()
                    os.rename(name, spare, **d)
                    aside.append((name, spare))
                os.rename(tmp, name, **d)
                placed.append(name)
        except BaseException:
            for name in reversed(placed):
                self._unlink(name)
            for name, spare in reversed(aside):
                try:
                    os.rename(spare, name, **d)
                except OSError:
                    pass
            raise
        for _, spare in aside:
            self._unlink(spare)

    def publish(self, names, write_one):
        """Create `names` in this folder all together or not at all: write_one(i, f) writes item
        i into f, a new file of this run (new_file); when every one is written and synced to disk,
        the final names are checked (_check_targets) and all renamed into place (_rename_all), with
        Ctrl-C held meanwhile. On any failure the temporary files are removed and the folder holds
        what it held before."""
        names = list(names)
        self._check_targets(names)
        temps = []
        try:
            for i, _ in enumerate(names):
                with self.new_file(temps) as f:
                    write_one(i, f)
                    f.flush()
                    os.fsync(f.fileno())
        except BaseException as e:
            self.discard(temps)
            if isinstance(e, OSError):
                raise TezipError(f"cannot write into {self.path} ({e.strerror or e})") from None
            raise
        self.publish_written(temps, names)

    def publish_written(self, temps, names):
        """Publish files this run has already written (temporaries from new_file, each complete and
        synced to disk) under `names`, all together or not at all, as publish() does: the final names
        are checked and all renamed into place with Ctrl-C held. On any failure every one of the
        temporary files is removed and the folder holds what it held before. (For writers that fill
        their files over time, e.g. frame by frame: frames.sink.)"""
        temps, names, done = list(temps), list(names), False
        if len(temps) != len(names):
            raise ValueError(f"{len(temps)} temporary files for {len(names)} names")
        try:
            with deferred_interrupts():
                if signals_received:  # interrupted earlier, though the KeyboardInterrupt got lost
                    raise KeyboardInterrupt
                self._check_targets(names)
                self._rename_all(temps, names)
                done = self.published = True
            with contextlib.suppress(OSError):
                os.fsync(self.fd)
        except OSError as e:
            raise TezipError(f"cannot write into {self.path} ({e.strerror or e})") from None
        finally:
            if not done:
                self.discard(temps)

    def discard(self, temps):
        """Remove temporary files of this run (new_file) that will not be published."""
        for tmp in temps:
            self._unlink(tmp)


def write_files_atomically(out, files):
    """Write {name: bytes} into the OutputFolder `out`, each synced to disk before any is published."""
    contents = list(files.values())
    out.publish(list(files), lambda i, f: f.write(contents[i]))
