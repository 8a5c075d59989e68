"""Scale-out on Dask (`distributed`): -c and -u with --workers N (a local cluster of N worker
processes) or --scheduler ADDRESS (an existing cluster, e.g. dask-jobqueue's SLURMCluster).

Each sequence is cut at keyframes into segments of whole windows, one task each (cluster/jobs.py,
compress/segments.py, decompress/segments.py); a batch's sequences run side by side. Workers return
chunks or decoded frames; this process alone writes, publishing each output all together
(base/publish.py). An archive is byte-identical whatever the number of workers, and to one made
without Dask. Under -t (dynamic windows) keyframes are placed while coding, so such a sequence is
one task (decoding it is still split: the archive records its keyframes).

    compress_on_cluster(model_dir, image_dir, out_dir, plan, flags, workers=, scheduler=) → failures
    decompress_on_cluster(model_dir, comp_dir, out_dir, flags, workers=, scheduler=)       → failures
"""

from pathlib import Path

from base.batch import batch_root, check_batch_folders, not_to_run, print_table, sequence_folders, sequence_label, sequence_name
from base.errors import TezipError
from base.publish import note_run_finished


def compress_on_cluster(model_dir, image_dir, out_dir, plan, flags, workers=None, scheduler=None):
    """Compress one sequence or a batch (a folder of sequence folders) on a Dask cluster. Returns
    the number of sequences that failed (a batch; its table printed) or 0; a single sequence's
    failure raises TezipError."""
    from cluster.jobs import CompressJob
    from compress.batch import is_complete_archive

    def job(src, out, label, n):
        return CompressJob(model_dir, src, out, plan, flags, label, n)

    return _run(image_dir, out_dir, "IMAGE_DIR", job, is_complete_archive, flags.overwrite, "compressed", workers,
                scheduler)


def decompress_on_cluster(model_dir, comp_dir, out_dir, flags, workers=None, scheduler=None):
    """Decompress one archive folder or a batch (a folder of archive folders) on a Dask cluster.
    Returns the number of sequences that failed, as compress_on_cluster."""
    from cluster.jobs import DecompressJob
    from decompress.batch import has_output

    def job(src, out, label, n):
        return DecompressJob(model_dir, src, out, flags, label, n)

    return _run(comp_dir, out_dir, "COMP_DIR", job, has_output, flags.overwrite, "decompressed", workers, scheduler)


def _run(src_root, out_root, what, make_job, already_done, overwrite, verb, workers, scheduler):
    from cluster.client import dask_client, worker_count
    from cluster.run import run_jobs

    sequences = sequence_folders(src_root, hdf5_files=what == "IMAGE_DIR")
    if sequences:
        check_batch_folders(src_root, out_root, what)
    with batch_root(out_root), dask_client(workers, scheduler) as client:
        n = worker_count(client)
        if not sequences:
            job = make_job(src_root, out_root, "", n)
            result, = run_jobs(client, [job], report_errors=False)
            if result.status == "FAILED":
                raise job.error if isinstance(job.error, TezipError) else TezipError(result.message)
            return 0
        results, jobs, where = [], [], []
        for i, src in enumerate(sequences, 1):
            out, label = Path(out_root) / sequence_name(src), sequence_label(i, len(sequences), src)
            ruled_out = not_to_run(src, out, label, already_done, overwrite)
            results.append(ruled_out)
            if ruled_out is None:
                jobs.append(make_job(src, out, label, n))
                where.append(i - 1)
        for k, result in zip(where, run_jobs(client, jobs)):
            results[k] = result
        note_run_finished()  # all published: a Ctrl-C while the cluster closes must not lose the table
    print_table(results, verb)
    return sum(r.status == "FAILED" for r in results)
