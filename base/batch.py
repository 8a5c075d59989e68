"""Batch mode's shared part: a folder of sequence folders, one job per sequence, failures recorded
without stopping the others, and the closing table. compress/batch.py and decompress/batch.py give
it their job."""

import math
import sys
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from base.errors import TezipError, printable
from base.progress import progress_bar
from base.publish import check_output_folder, note_run_finished


@dataclass
class SequenceResult:
    name: str
    status: str  # "ok", "skipped" or "FAILED"
    frames: int = 0
    ratio: float = math.nan
    max_abs_error: int | None = None
    seconds: float = 0.0
    message: str = ""


# A batch folder may hold HDF5 files, each one sequence (its one frame dataset, or the NeXus default).
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".nxs", ".nx5")


def is_hdf5_file(path):
    return path.suffix.lower() in HDF5_SUFFIXES and path.is_file()


def sequence_folders(folder, hdf5_files=False):
    """The sequences of `folder` when it is a batch, else None: its subfolders (sorted by name),
    and with `hdf5_files` (compression) its HDF5 files too, when it holds nothing else.

    A folder of images (or of archive files) is a single sequence; a folder mixing images and
    subfolders is left to the single-sequence reader, which names the stray subfolder. Raises
    TezipError when two sequences would share an output folder (run1/ beside run1.h5).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return None
    try:
        entries = [e for e in folder.iterdir() if not e.name.startswith(".")]
    except OSError:
        return None  # the single-sequence reader reports the folder's problem
    members = sorted((e for e in entries if e.is_dir() or (hdf5_files and is_hdf5_file(e))), key=lambda e: e.name)
    if not members or len(members) != len(entries):
        return None
    names = [sequence_name(e) for e in members]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        same = [printable(e.name) + ("/" if e.is_dir() else "") for e in members if sequence_name(e) == clash[0]]
        count = {2: "two", 3: "three"}.get(len(same), str(len(same)))
        raise TezipError(f"batch folder {printable(folder)}: {printable(clash[0])} names {count} sequences ({', '.join(same)}), whose "
                         f"archives would share OUT_DIR/{printable(clash[0])}; rename one")
    return members


def sequence_name(src):
    """The name of a batch sequence's output folder: a folder's name, an HDF5 file's without its
    suffix (run_017.h5 → OUT_DIR/run_017/, restored there as run_017.h5)."""
    src = Path(src)
    return src.stem if src.suffix.lower() in HDF5_SUFFIXES and not src.is_dir() else src.name


@contextmanager
def batch_root(out_root):
    """Around a batch's run: an OUT_DIR that the run created (as the parent of its sequences'
    folders) and that an interruption or error leaves empty is removed, so nothing is left of a
    batch that wrote nothing."""
    root = Path(out_root)
    existed = root.exists() or root.is_symlink()
    try:
        yield
    except BaseException:
        if not existed:
            with suppress(OSError):
                root.rmdir()  # only when empty
        raise


def run_batch(sequences, out_root, process, already_done, overwrite, verb):
    """Call `process(src, out, label)` → SequenceResult for every sequence folder, skipping those
    `already_done(out)` says are finished (unless overwrite) and recording failures without
    stopping. Ctrl-C stops the batch; finished sequences stay (each was published atomically)."""
    results = []
    bar = progress_bar(len(sequences), verb, unit="sequence")
    try:
        with batch_root(out_root):
            _run_all(sequences, out_root, process, already_done, overwrite, results, bar)
    finally:
        bar.close()
    print_table(results, verb)
    return results


def _run_all(sequences, out_root, process, already_done, overwrite, results, bar):
    for i, src in enumerate(sequences, 1):
        out = Path(out_root) / sequence_name(src)
        label = sequence_label(i, len(sequences), src)
        ruled_out = not_to_run(src, out, label, already_done, overwrite)
        if ruled_out is not None:
            results.append(ruled_out)
        else:
            t = time.time()
            try:
                results.append(process(src, out, label))
            except (TezipError, MemoryError, OSError) as e:
                message = str(e) if isinstance(e, TezipError) else (getattr(e, "strerror", None) or "not enough memory")
                print(f"{label}error: {message}", file=sys.stderr, flush=True)
                results.append(SequenceResult(src.name, "FAILED", seconds=time.time() - t, message=message))
        bar(1)


def sequence_label(i, count, src):
    """The prefix of a batch's lines about sequence i (1-based) of `count`."""
    return f"[{i}/{count}] {printable(src.name)}: "


def not_to_run(src, out, label, already_done, overwrite):
    """The SequenceResult of a sequence the batch does not run — its OUT is a symbolic link
    (FAILED) or already done (skipped, unless overwrite), said on one line — else None."""
    if out.is_symlink():  # never written through: it could point anywhere
        message = (f"{printable(out)} is a symbolic link: TEZip writes a sequence only into a real "
                   f"folder of OUT_DIR (remove the link)")
        print(f"{label}error: {message}", file=sys.stderr, flush=True)
        return SequenceResult(src.name, "FAILED", message=message)
    if not overwrite and already_done(out):
        print(f"{label}skipped ({out} is already done; --overwrite redoes it)", flush=True)
        return SequenceResult(src.name, "skipped")
    return None


def print_table(results, verb):
    note_run_finished()  # every sequence is done: the table is the run's last line
    rows = [("sequence", "status", "frames", "ratio", "max err", "seconds")]
    for r in results:
        rows.append((
            printable(r.name), r.status, str(r.frames) if r.frames else "-",
            "-" if math.isnan(r.ratio) else f"{r.ratio:.2f}",
            "-" if r.max_abs_error is None else str(r.max_abs_error),
            f"{r.seconds:.1f}" if r.seconds else "-",
        ))
    widths = [max(len(row[k]) for row in rows) for k in range(len(rows[0]))]
    print()
    for j, row in enumerate(rows):
        print("  ".join(cell.ljust(w) if k < 2 else cell.rjust(w) for k, (cell, w) in enumerate(zip(row, widths))))
        if j == 0:
            print("  ".join("-" * w for w in widths))
    failed = [r for r in results if r.status == "FAILED"]
    done = sum(r.status == "ok" for r in results)
    skipped = sum(r.status == "skipped" for r in results)
    print(f"{verb} {done} of {len(results)} sequences, {skipped} skipped, {len(failed)} failed"
          + (": " + ", ".join(printable(r.name) for r in failed) if failed else ""))


def check_batch_folders(root, out_root, what):
    """OUT must not lie inside the batch folder (it would become a sequence) nor hold it."""
    check_output_folder(out_root, root, overwrite=True, what=what)
