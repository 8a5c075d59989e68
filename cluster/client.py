"""The Dask client of a run: a local cluster of N worker processes (--workers N) or an existing
cluster's scheduler (--scheduler ADDRESS). `distributed` is imported here only, when one of the two
options is given, so ordinary runs never pay for it."""

import logging
import os
import re
import signal
import sys
from contextlib import contextmanager

from base.errors import OptionError, TezipError

# Local workers: one task each at a time, one thread each (the codec's numba kernels would
# otherwise each take every core, N workers fighting over them).
# How long to try reaching --scheduler before giving up with one line.
CONNECT_TIMEOUT = "10s"
# [protocol://]host:port (a name, an IPv4 address or a bracketed IPv6 one), with the protocols
# distributed itself connects over (UCX needs packages TEZip does not install).
ADDRESS = re.compile(r"^((tcp|tls|ws|wss)://)?(\[[0-9a-fA-F:.]+\]|[^\s:/\[\]]+):([0-9]{1,5})$")
ENCRYPTED = ("tls", "wss")
# How long a run waits for a first worker to join an existing scheduler that has none (a batch
# system's workers may still be queued), saying so once, before it gives up with one line.
WORKER_WAIT_S = 600
WORKER_ENV = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def check_cluster_options(workers, scheduler):
    """Raise OptionError for --workers below 1 or given with --scheduler."""
    if workers is not None and scheduler is not None:
        raise OptionError("give --workers N (a local Dask cluster) or --scheduler ADDRESS (an existing one), not both")
    if workers is not None and workers < 1:
        raise OptionError(f"--workers must be at least 1 (got {workers})")
    if scheduler is not None:
        match = ADDRESS.match(str(scheduler))
        if not match or not 1 <= int(match.group(4)) <= 65535 or not _host_name_ok(match.group(3)):
            raise OptionError("--scheduler needs a scheduler's address such as tcp://host:8786 (protocols tcp, tls, "
                              f"ws, wss; ports 1-65535) (got {scheduler!r})")


def _host_name_ok(host):
    """Whether a host name can be looked up at all (labels of 1-63 characters; IDNA): the client
    fails deep inside, and then hangs 20 s on exit, on one that cannot."""
    if host.startswith("["):
        return True
    try:
        host.encode("idna")
    except UnicodeError:
        return False
    return True


def _distributed():
    try:
        import distributed
    except ImportError:
        raise TezipError("--workers and --scheduler need the `distributed` package (pip install -r requirements.txt)") from None
    return distributed


@contextmanager
def dask_client(workers=None, scheduler=None):
    """A distributed.Client for the run, closed (and a local cluster shut down) on leaving.
    workers: start a LocalCluster of that many single-threaded worker processes; scheduler: connect
    to it (waiting CONNECT_TIMEOUT at most), then, if it has no worker yet, wait WORKER_WAIT_S for
    one (saying so on stderr). Dask's own log lines are silenced meanwhile: failures reach the user
    as TEZip's one line each. Raises TezipError (one line) when the scheduler cannot be reached, no
    worker joins or the cluster does not start."""
    check_cluster_options(workers, scheduler)
    distributed = _distributed()
    cluster = None
    with _dask_logs_silenced():
        _check_security(distributed, scheduler)
        try:
            if scheduler is not None:
                client = distributed.Client(str(scheduler), timeout=CONNECT_TIMEOUT, set_as_default=False)
            else:
                cluster = local_cluster(workers)
                client = distributed.Client(cluster, set_as_default=False)
        except (OSError, TimeoutError, ValueError, TypeError, RuntimeError) as e:
            if cluster is not None:
                cluster.close()
            where = f"the Dask scheduler at {scheduler}" if scheduler is not None else f"a local Dask cluster of {workers} workers"
            raise TezipError(f"cannot reach {where} ({_one_line(e)}); nothing was written") from None
        try:
            if scheduler is not None:
                _wait_for_a_worker(client, scheduler)
            yield client
        finally:
            client.close()
            if cluster is not None:
                cluster.close()


def _check_security(distributed, scheduler):
    """Refuse (one line) what Dask's TLS settings cannot serve: a tls:// or wss:// address without
    them, a plain address or a local cluster where the configuration requires encryption
    (distributed.comm.require-encryption). The client would fail deep inside with a traceback, and
    then hang 20 s on exit."""
    security = distributed.Security()
    if scheduler is None:
        if security.require_encryption:
            raise TezipError("Dask's configuration requires encryption (distributed.comm.require-encryption), which a "
                             "local cluster (--workers) does not set up; use --scheduler tls://… of an encrypted "
                             "cluster, or lift the requirement; nothing was written")
        return
    scheme = str(scheduler).split("://", 1)[0] if "://" in str(scheduler) else "tcp"
    if scheme not in ENCRYPTED and security.require_encryption:
        raise TezipError(f"Dask's configuration requires encryption (distributed.comm.require-encryption), and "
                         f"--scheduler {scheduler} is not encrypted (tls:// or wss://); nothing was written")
    if scheme in ENCRYPTED and security.get_connection_args("client").get("ssl_context") is None:
        raise TezipError(f"--scheduler {scheduler} is encrypted, and Dask has no TLS settings to connect with (set "
                         "distributed.comm.tls.ca-file and .client.cert/.key in the Dask configuration); nothing was written")


def _wait_for_a_worker(client, scheduler):
    """Return once the scheduler has a worker; say on stderr that the run waits if it has none yet.
    Raises TezipError after WORKER_WAIT_S without one."""
    if client.scheduler_info().get("workers"):
        return
    print(f"tezip.py: note: the Dask scheduler at {scheduler} has no worker yet; waiting up to "
          f"{WORKER_WAIT_S // 60} minutes for one to join (Ctrl-C stops)", file=sys.stderr, flush=True)
    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT_S)
    except TimeoutError:
        raise TezipError(f"no Dask worker joined the scheduler at {scheduler} within {WORKER_WAIT_S // 60} minutes; "
                         "nothing was written") from None


@contextmanager
def _dask_logs_silenced():
    """Dask's loggers in this process at CRITICAL for the run ("Failed to reconnect to scheduler",
    heartbeat errors after a scheduler is lost): TEZip reports what failed in its own line."""
    # Dask's configuration gives some loggers levels of their own (distributed.client among them),
    # which the parent's level does not override.
    names = ["distributed"] + [n for n in logging.root.manager.loggerDict if n.startswith("distributed.")]
    levels = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def local_cluster(workers):
    """A distributed.LocalCluster of `workers` single-threaded worker processes for TEZip (close it
    when done). Dask's nannies start workers with MALLOC_TRIM_THRESHOLD_ set, which also fixes
    glibc's mmap threshold: every frame-sized array is then mapped and unmapped afresh, and the
    codec spent about 60 % more CPU per frame in a worker than in a plain process (measured, 96x128
    frames). It is left unset here."""
    import dask

    distributed = _distributed()
    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}), _sigint_blocked():
        return distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                                        silence_logs=logging.CRITICAL, env={**WORKER_ENV, **_inherited_env()},
                                        preload=["cluster.worker_setup"])


@contextmanager
def _sigint_blocked():
    """SIGINT blocked in this thread while the cluster starts. A terminal's Ctrl-C goes to the whole
    process group, and worker processes still importing (a second or two, before worker_setup
    makes them ignore it) each printed a KeyboardInterrupt traceback. The cluster's event-loop
    thread is created here and inherits the mask, the worker processes it spawns inherit it through
    exec, so they never see SIGINT; the client's own Ctrl-C stays pending and is raised when the
    mask is restored on leaving (the run then stops with its one line). multiprocessing's resource
    tracker, which the first spawn starts, blocks and then *unblocks* SIGINT in the spawning thread
    (the event loop's): it is started here first, outside the mask."""
    if not hasattr(signal, "pthread_sigmask"):  # not on Windows
        yield
        return
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _inherited_env():
    """TEZIP_* settings of this process, which its local workers must share (model threads, the
    tests' fault injection)."""
    return {k: v for k, v in os.environ.items() if k.startswith("TEZIP_")}


def _one_line(error):
    return " ".join(str(error).split()) or type(error).__name__


def worker_count(client):
    """How many workers the cluster has now (at least 1: tasks wait for one to join)."""
    return max(1, len(client.scheduler_info().get("workers", {})))
