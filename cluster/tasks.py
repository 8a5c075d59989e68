"""What runs on a Dask worker: one segment coded or decoded per task. Tasks return their results
(chunk bytes, decoded frames) to the client, which alone writes the output (all-or-nothing, through
base.publish.OutputFolder): a worker that dies mid-task leaves nothing behind, and Dask reruns the
task on another worker.

Each worker process keeps what its tasks share (module-level caches): the model, loaded once per
worker and model (keyed by MODEL_DIR and the model's digest), and the last few opened sequences
and archives (keyed by the run's token, so a later run over the same paths opens them afresh).
"""

import os
from collections import OrderedDict
from pathlib import Path

from base.errors import TezipError

_MODELS = {}  # (MODEL_DIR, digest) → (ReferenceWeights, doc)
_OPEN = OrderedDict()  # (token, path) → an open FrameSource or Archive
OPEN_KEPT = 4
LOADS = {"models": 0}  # how many times this process loaded a model (the tests check "once per worker")

# Fault injection for the tests: a file named by this variable, holding a path fragment; the first
# task whose input path contains it renames the file away and kills its worker (os._exit). A
# fragment written "every time:FRAGMENT" kills every such task's worker and stays.
FAULT_ENV = "TEZIP_TEST_KILL_WORKER_ONCE"
EVERY_TIME = "every time:"


def model(model_dir, digest):
    """(ReferenceWeights, doc) of MODEL_DIR, loaded once per process; None for MODEL_DIR `none`
    (digest None). Raises TezipError when the folder no longer holds the model of `digest`."""
    from prednet.modelfile import is_no_model, load_weights

    if digest is None or is_no_model(model_dir):
        return None
    key = (str(model_dir), digest)
    if key not in _MODELS:
        loaded = load_weights(model_dir)
        LOADS["models"] += 1
        if loaded[1]["digest"] != digest:
            raise TezipError(f"model {model_dir} changed during the run (its digest differs); nothing was written")
        _MODELS[key] = loaded
    return _MODELS[key]


def _opened(token, path, open_it):
    """An open source or archive of this run, kept for the run's next tasks on this worker."""
    key = (token, str(path))
    if key in _OPEN:
        _OPEN.move_to_end(key)
        return _OPEN[key]
    thing = open_it(path)
    _OPEN[key] = thing
    while len(_OPEN) > OPEN_KEPT:
        _OPEN.popitem(last=False)[1].close()
    return thing


def _maybe_die(path):
    marker = os.environ.get(FAULT_ENV)
    if not marker:
        return
    try:
        fragment = Path(marker).read_text().strip()
    except OSError:
        return
    if fragment.startswith(EVERY_TIME) and fragment[len(EVERY_TIME):] in str(path):
        os._exit(1)
    if fragment and fragment in str(path):
        try:
            os.rename(marker, marker + ".fired")  # atomic: one task only
        except OSError:
            return
        os._exit(1)


def encode_task(token, model_dir, digest, spec, expected, plan, part, device, report_frame):
    """Code one segment. spec: the sequence (frames.source spec); expected: (N, H, W, C, dtype
    name, mode) the client saw; plan: CodecPlan; part: compress.segments.SegmentPlan.part(i).
    Returns compress.segments.SegmentCode."""
    from compress.segments import encode_segment
    from frames.source import open_source

    _maybe_die(spec)
    source = _opened(token, spec, open_source)
    seen = (source.n_frames, source.height, source.width, source.channels, str(source.dtype), source.mode)
    if seen != tuple(expected):
        raise TezipError(f"{spec} changed during the run (a worker reads {seen[:4]} {seen[5]} frames, the client "
                         f"read {tuple(expected)[:4]} {expected[5]}); nothing was written")
    return encode_segment(model(model_dir, digest), source, plan, part, device, report_frame)


def decode_task(token, model_dir, digest, comp_dir, frames, device):
    """Decode and verify frames (start, end) of the archive in comp_dir; digest: the model's the
    client checked the archive against (None: made without a model). Returns, for frames written
    back as image files, each frame's file bytes (a list, frames.sink.FolderSink.encode: the
    encoding is work the workers share), else the frames, (end - start, H, W, C) of the archive's
    dtype."""
    from archive import read_archive
    from decompress.segments import decode_segment
    from frames.sink import FolderSink

    _maybe_die(comp_dir)
    archive = _opened(token, comp_dir, read_archive)
    loaded = model(model_dir, digest)
    decoded = decode_segment(model_dir, None if loaded is None else loaded[0], archive, frames, device)
    if archive.sink_description().get("kind") != "folder":
        return decoded
    files, _ = FolderSink.file_names(archive.names)
    return [FolderSink.encode(frame, archive.mode, files[frames[0] + k]) for k, frame in enumerate(decoded)]
