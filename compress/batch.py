"""Batch mode: a folder of sequence folders (train_data_create.py's layout) → one archive per sequence.

    tezip.py -c MODEL RUNS/ OUT/      RUNS/<name>/ → OUT/<name>/   (decompress/batch.py mirrors it)
                                      RUNS/<name>.h5 → OUT/<name>/ (an HDF5 file is one sequence)

Each sequence is compressed on its own (one failure does not stop the others); a sequence whose
archive is already complete is skipped unless --overwrite, so an interrupted batch resumes where it
stopped. The end is a table, one row per sequence, and the number of failures.
"""

from pathlib import Path

from archive import ARCHIVE_FILES
from base.batch import SequenceResult, check_batch_folders, run_batch, sequence_folders


def is_complete_archive(folder):
    return all((Path(folder) / name).is_file() for name in ARCHIVE_FILES)


def compress_batch(model_dir, root, out_root, plan, flags):
    """Compress every sequence folder of `root` into out_root/<name>/. Returns the results."""
    from compress.pipeline import compress_folder

    check_batch_folders(root, out_root, "IMAGE_DIR")

    def process(src, out, label):
        summary = compress_folder(model_dir, src, out, plan, flags, label=label)
        return SequenceResult(src.name, "ok", summary.frames, summary.ratio, summary.max_abs_error, summary.seconds)

    return run_batch(sequence_folders(root, hdf5_files=True), out_root, process, is_complete_archive, flags.overwrite, "compressed")
