"""The client's loop: the segment tasks of every job submitted to the cluster, a bounded number at a
time and in job order (so only the jobs being worked on hold an open OUT_DIR and spool), each
result handed to its job as it arrives, each job published as soon as its last segment is in.

A task that fails (a bad frame, a corrupt archive, a worker killed more often than Dask's
`distributed.scheduler.allowed-failures`) fails its job only: its other tasks are cancelled, its
output discarded, and the other jobs go on. A worker that dies mid-task is replaced and its task
rerun by Dask itself.
"""

import sys
from itertools import count

from base.batch import SequenceResult
from base.errors import TezipError, printable
from base.progress import progress_bar
from cluster.client import worker_count

IN_FLIGHT_PER_WORKER = 2  # tasks queued per worker: enough to keep it busy, few results held


def _message(error):
    """One line for what made a task (or a job's opening or publishing) fail."""
    if isinstance(error, TezipError):
        return str(error)
    if isinstance(error, MemoryError):
        return "not enough memory"
    if isinstance(error, OSError):
        return f"{error.strerror or error}" + (f": {printable(error.filename)}" if getattr(error, "filename", None) else "")
    if type(error).__name__ == "KilledWorker":
        return ("a Dask worker died each time it ran one of its segments (out of memory? see the workers' logs); "
                "nothing was written")
    return f"a worker failed ({type(error).__name__}: {' '.join(str(error).split())}); nothing was written"


def _cancelled(error, results):
    """The one line for a run whose tasks the scheduler cancelled (it went away: the reason is then
    "scheduler-connection-lost")."""
    reason = getattr(error, "reason", None) or "unknown reason"
    finished = sum(r is not None and r.status != "FAILED" for r in results)
    rest = ("nothing was written" if not finished else
            f"the {finished} sequence{'s' if finished > 1 else ''} finished before {'are' if finished > 1 else 'is'} "
            "kept, the rest were not written")
    what = "lost the connection to" if reason == "scheduler-connection-lost" else f"tasks cancelled ({reason}) by"
    return f"{what} the Dask scheduler mid-run; {rest}"


def run_jobs(client, jobs, report_errors=True):
    """Run `jobs` (cluster.jobs: CompressJob / DecompressJob, not yet opened) on `client`'s cluster.
    Returns one SequenceResult per job, in order. report_errors: print a failed job's line on
    stderr (a batch; a single sequence's caller raises it instead). Ctrl-C or a bug discards
    every job not yet published."""
    from distributed import as_completed

    limit = IN_FLIGHT_PER_WORKER * worker_count(client) + 1
    results = [None] * len(jobs)
    owner = {}  # future → (job index, segment index)
    futures = {k: set() for k in range(len(jobs))}  # each job's tasks still pending
    open_jobs = set()
    done = as_completed(loop=client.loop)
    keys = count()
    bar = progress_bar(None, "segments", unit="task")

    def fail(k, error):
        message = _message(error)
        jobs[k].error = error
        if report_errors:
            print(f"{jobs[k].label}error: {message}", file=sys.stderr, flush=True)
        results[k] = SequenceResult(jobs[k].name, "FAILED", message=message)
        client.cancel(list(futures[k]))
        if k in open_jobs:
            open_jobs.discard(k)
            jobs[k].abort()

    def stream():
        """(job index, segment index, function, args) of every task, jobs opened as they come."""
        for k, job in enumerate(jobs):
            try:
                tasks = job.open()
            except (TezipError, MemoryError, OSError) as e:
                fail(k, e)
                continue
            open_jobs.add(k)
            for i, (function, args) in enumerate(tasks):
                if results[k] is None:
                    yield k, i, function, args

    pending = stream()

    def submit_more():
        while len(owner) < limit:
            item = next(pending, None)
            if item is None:
                return
            k, i, function, args = item
            future = client.submit(function, *args, pure=False, key=f"tezip-{jobs[k].token}-{i}-{next(keys)}")
            owner[future] = (k, i)
            futures[k].add(future)
            done.add(future)

    try:
        submit_more()
        for future in done:
            k, i = owner.pop(future)
            futures[k].discard(future)
            bar(1)
            if results[k] is None:
                try:
                    jobs[k].add(i, future.result())
                    if jobs[k].complete:
                        results[k] = jobs[k].finish()
                        open_jobs.discard(k)
                except (TezipError, MemoryError, OSError) as e:
                    fail(k, e)
                except Exception as e:  # noqa: BLE001 - raised in a worker (KilledWorker, a bug): this job only
                    if future.status == "cancelled":  # not by fail(): the scheduler was lost (or cancelled it)
                        raise TezipError(_cancelled(e, results)) from None
                    if future.status != "error":
                        raise
                    fail(k, e)
            future.release()
            submit_more()
    finally:
        bar.close()
        for k in list(open_jobs):
            jobs[k].abort()
    return results

