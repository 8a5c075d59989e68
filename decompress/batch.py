"""Batch mode, the mirror of compress/batch.py: COMP/<name>/ archives → OUT/<name>/ frames."""

import time
from pathlib import Path

from compress import archive
from compress.batch import SequenceResult, check_batch_folders, has_output, run_batch, sequence_folders


def decompress_batch(model_dir, comp_root, out_root, verbose=False, device="CPU", overwrite=False):
    """Decompress every archive folder of comp_root into out_root/<name>/. Returns the results."""
    from decompress.pipeline import decompress_folder

    check_batch_folders(comp_root, out_root, "COMP_DIR")

    def process(src, out, label):
        t = time.time()
        frames = decompress_folder(model_dir, src, out, verbose=verbose, device=device, overwrite=overwrite, label=label)
        comp_bytes = sum((src / name).stat().st_size for name in archive.ARCHIVE_FILES)
        # Every frame matched the checksum of what the encoder decoded, so the error is the archive's.
        return SequenceResult(src.name, "ok", len(frames), frames.nbytes / max(1, comp_bytes), None, time.time() - t)

    return run_batch(sequence_folders(comp_root), out_root, process, has_output, overwrite, "decompressed")
