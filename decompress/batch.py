"""Batch mode, the mirror of compress/batch.py: COMP/<name>/ archives → OUT/<name>/ frames."""

from pathlib import Path

from base.batch import SequenceResult, check_batch_folders, run_batch, sequence_folders
from base.publish import is_partial


def has_output(folder):
    """True when `folder` holds anything but the temporary files of an interrupted run."""
    folder = Path(folder)
    return folder.is_dir() and any(not is_partial(e) for e in folder.iterdir())


def decompress_batch(model_dir, comp_root, out_root, flags):
    """Decompress every archive folder of comp_root into out_root/<name>/. Returns the results."""
    from decompress.pipeline import decompress_folder

    check_batch_folders(comp_root, out_root, "COMP_DIR")

    def process(src, out, label):
        done = decompress_folder(model_dir, src, out, flags, label=label)
        # Every frame matched the checksum of what the encoder decoded, so the error is the archive's.
        return SequenceResult(src.name, "ok", done.frames, done.ratio, None, done.seconds)

    return run_batch(sequence_folders(comp_root), out_root, process, has_output, flags.overwrite, "decompressed")
