"""The set-up of the worker processes of TEZip's local Dask cluster (a Dask preload:
cluster.client.local_cluster names it).

Ctrl-C is the client's to handle: it cancels the run and closes the cluster, which stops the
workers. A terminal sends SIGINT to the whole process group, workers included, and each of them
then printed its own tracebacks; they ignore it from their start-up on.
"""

import signal


def dask_setup(worker):
    """Called by Dask in the worker process, on its main thread, as the worker starts."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
