"""Writing output safely: an OUT_DIR checked before any work, files written under temporary
names and published all together (renamed only when every one is complete, with Ctrl-C held), and
the record of signals that makes an interrupted run publish nothing."""

import contextlib
import os
import signal
import threading
from pathlib import Path

from base.errors import TezipError

TMP_SUFFIX = ".tezip-partial"


def check_output_folder(out_dir, input_dir, overwrite, what="IMAGE_DIR"):
    out, inp = Path(out_dir).resolve(), Path(input_dir).resolve()
    if out == inp:
        raise TezipError(f"OUT_DIR {out_dir} is the same folder as {what}")
    if inp in out.parents:
        raise TezipError(f"OUT_DIR {out_dir} lies inside {what} {input_dir}")
    if out in inp.parents:
        raise TezipError(f"{what} {input_dir} lies inside OUT_DIR {out_dir}")
    if out.exists() and not out.is_dir():
        raise TezipError(f"OUT_DIR {out_dir} exists and is not a folder")
    if out.is_dir():
        try:  # temporary files an interrupted run left behind do not count (they are cleaned up)
            used = any(not is_partial(e) for e in out.iterdir())
        except OSError as e:
            raise TezipError(f"OUT_DIR {out_dir} cannot be read ({e.strerror or e})") from None
        if used and not overwrite:
            raise TezipError(f"OUT_DIR {out_dir} is not empty (use --overwrite to replace its contents)")
        if not os.access(out, os.W_OK | os.X_OK):
            raise TezipError(f"OUT_DIR {out_dir} is not writable")
    else:  # checked now, not after minutes of work: the folder must be creatable
        parent = next(p for p in out.parents if p.exists())
        if not parent.is_dir():
            raise TezipError(f"OUT_DIR {out_dir} cannot be created: {parent} is not a folder")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise TezipError(f"OUT_DIR {out_dir} cannot be created: {parent} is not writable")


def is_partial(path):
    """A temporary file of ours, left by an interrupted run."""
    return Path(path).name.endswith(TMP_SUFFIX)


def remove_partials(folder):
    """Delete the temporary files an interrupted run left in folder (names ending in TMP_SUFFIX)."""
    try:
        for entry in Path(folder).iterdir():
            if is_partial(entry) and entry.is_file():
                entry.unlink(missing_ok=True)
    except OSError as e:
        raise TezipError(f"cannot clean up {folder} ({e.strerror or e})") from None


def make_output_folder(folder):
    """Create folder (and missing parents); returns the folders created, for remove_created."""
    folder = Path(folder)
    created = [p for p in [folder, *folder.parents] if not p.exists()][::-1]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        remove_created(created)
        raise TezipError(f"cannot create OUT_DIR {folder} ({e.strerror or e})") from None
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


def publish_atomically(folder, names, write_one):
    """Create `names` in folder so that an interrupted or failed run leaves no file that looks
    complete: `write_one(i, tmp_path)` writes item i under a temporary name (tracked before it is
    written, so a half-written one is removed too); all are renamed only when every one is written,
    with Ctrl-C held meanwhile; on failure temporaries and an OUT_DIR this call created are removed."""
    created = make_output_folder(Path(folder))
    remove_partials(Path(folder))
    written, done = [], False
    try:
        for i, name in enumerate(names):
            tmp = Path(folder) / (name + TMP_SUFFIX)
            written.append((tmp, Path(folder) / name))
            write_one(i, tmp)
        with deferred_interrupts():
            if signals_received:  # interrupted earlier, though the KeyboardInterrupt got lost
                raise KeyboardInterrupt
            for tmp, final in written:
                os.replace(tmp, final)
            done = True
    except OSError as e:
        raise TezipError(f"cannot write into {folder} ({e.strerror or e})") from None
    finally:
        for tmp, _ in written:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
        if not done:
            remove_created(created)


def write_files_atomically(folder, files):
    """Write {name: bytes} into folder, each synced to disk before any is published."""
    contents = list(files.values())

    def write_one(i, tmp):
        with open(tmp, "wb") as f:
            f.write(contents[i])
            f.flush()
            os.fsync(f.fileno())

    publish_atomically(folder, list(files), write_one)
