#!/usr/bin/env python3
"""Fuzz the decoder with mutated archives: every case must either decode to exactly the original
frames or stop with a TezipError (one line); anything else — another exception, a hang, an
allocation far beyond the archive's declared size, or wrong pixels — is a failure.

    python benchmarks/fuzz_decoder.py                      # the full run: 10 000 cases, 2 workers
    python benchmarks/fuzz_decoder.py --cases 20000 --seed 7 --workers 2 --timeout 60
    python benchmarks/fuzz_decoder.py --model3 M3/ --model1 M1/   # reuse trained tiny models

Without --model3/--model1 it first trains the tiny PredNets the tests use (about a minute). The
base archives are small real format-3 archives made by compress_folder (RGB lossless SWP,
grayscale lossy DWP with -n, RGB pwrel, grayscale lossless, and RGB abs 1 without a model
(MODEL_DIR none); the RGB ones share their frame size, and so do the grayscale ones, so files and
chunks can be swapped between them). Each case applies one mutation kind (see KINDS) chosen from
(seed, case index), so any case can be replayed:

    python benchmarks/fuzz_decoder.py --replay 1234 --seed 0

A case is decoded as `tezip.py -u` decodes: decompress_folder (archive read frame by frame, the
reference kernel's predictions, every frame verified, written through the sink into a fresh
output folder), whose frames are then read back and compared. Cases run in worker processes; a
worker that reports nothing for --timeout seconds is killed, its case recorded as a hang, and a new
worker goes on. Per case, the peak of Python-traced memory (numpy arrays, bytes; tracemalloc) over
the whole decode is compared with a bound derived from the archive's declared size. A fixed-seed
subset of the same cases runs in CI: tests/test_fuzz.py. Exit status 1 when any case failed.
Never part of the test suite.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import tracemalloc
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from sequence.framecoder import _read_varint as read_varint  # noqa: E402  (the chunk layout's own
from sequence.framecoder import _varint as varint  # noqa: E402            length fields)

KEYFRAME_FILE, ENTROPY_FILE, NAMES_FILE = "key_frame.dat", "entropy.dat", "filename.txt"
FILES = (KEYFRAME_FILE, ENTROPY_FILE, NAMES_FILE)
DAT_FILES = (KEYFRAME_FILE, ENTROPY_FILE)

KINDS = (
    "bitflip",  # 1-8 random bits of one file flipped
    "bytes",  # 1-4 bytes of one file set to random / 0x00 / 0xFF values
    "truncate",  # one file cut short (anywhere, header included; 0 bytes too)
    "append",  # random bytes or a piece of the file added at its end
    "splice",  # the head of one archive's file joined to the tail of another's
    "swap_files",  # a whole file from another archive, or two files of one archive exchanged
    "delete_file",  # one file missing
    "header_field",  # one header field set to an extreme value (header checksum made valid again)
    "prefix_field",  # magic, format version or header length changed
    "chunk_deep",  # bytes inside one chunk changed, its size and crc in the header made valid again
    "chunk_swap",  # a chunk exchanged with another (same or other archive), crcs made valid again
    "chunk_parts",  # inside one frame's chunk: its tail tag, its block-choice length or its choices changed (crc fixed)
    "names_edit",  # filename.txt edited: hostile or duplicate names, count/crc sometimes fixed
)

OK_OUTCOMES = ("exact", "error")  # anything else is a failure
OUTCOMES = ("exact", "error", "WRONG", "CRASH", "HANG", "MEMORY", "BAD-MESSAGE")

EXTREMES = [0, -1, 1, 2, 255, 256, 65535, 2**31 - 1, 2**31, -(2**31), 2**32, 2**53, 2**63 - 1, -(2**63), 2**64,
            10**30, 1e308, -1e308, 0.5, float("inf"), float("-inf"), float("nan"), True, False, None, "",
            "x" * 4096, "uint64", "zstd", "ctxrange", [], [0], [-1], [2**62], {}, {"id": "zstd"}, {"id": ["zstd"]}]

_PREFIX = struct.Struct("<8sHI")
# Python-traced memory a case may use beyond 64 bytes per declared byte: the zstd and numpy work
# buffers, parsed headers and the model's state of these small archives (a legit decode peaks
# well under 1 MB), so any allocation sized by a hostile field shows.
MEMORY_SLACK = 8 << 20
MEMORY_PER_DECLARED_BYTE = 64


def crc32(b):
    return zlib.crc32(b) & 0xFFFFFFFF


# --------------------------------------------------------------------------- base archives

BASE_SPECS = (
    # name, channels, frames, height, width, seed, CodecPlan options (model="none": MODEL_DIR none)
    ("rgb_lossless_swp", 3, 6, 16, 24, 3, dict(window=2, lanes=2)),
    ("gray_abs2_dwp_n", 1, 7, 17, 23, 4, dict(warmup=1, threshold=1.0, mode="abs", bounds=(2,), entropy=False, lanes=2)),
    ("rgb_pwrel_swp", 3, 5, 16, 24, 5, dict(window=3, mode="pwrel", bounds=(0.05,))),
    ("gray_lossless_swp", 1, 6, 17, 23, 6, dict(window=2, lanes=1)),
    ("rgb_abs1_none", 3, 6, 16, 24, 7, dict(window=2, mode="abs", bounds=(1,), model="none")),
)


@dataclass
class Base:
    name: str
    channels: int
    files: dict  # name -> bytes
    frames: np.ndarray  # what the unmutated archive decodes to (verified once)
    names: list
    declared_bytes: int  # raw size the header declares (frames * h * w * c)


def build_bases(models: dict, workdir: Path, bases=BASE_SPECS) -> list[Base]:
    """Compress the small base sequences with the real models; write them under workdir/<name>/."""
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import make_sequence

    from compress.pipeline import compress_folder
    from sequence.plan import CodecPlan, RunFlags

    out = []
    for name, channels, n, h, w, seed, options in bases:
        images, comp = workdir / f"{name}_images", workdir / name
        make_sequence(images, n_frames=n, height=h, width=w, channels=channels, seed=seed, noise=3)
        options = dict(options)
        model = options.pop("model", models[channels])
        with contextlib.redirect_stdout(io.StringIO()):
            compress_folder(model, images, comp, CodecPlan.make(**options), RunFlags(overwrite=True))
        out.append(load_base(comp, name, channels, n * h * w * channels))
    return out


def load_base(comp: Path, name: str, channels: int, declared: int) -> Base:
    files = {f: (comp / f).read_bytes() for f in FILES}
    ref = comp / "reference.npz"
    if ref.exists():
        z = np.load(ref)
        frames, names = z["frames"], list(z["names"])
    else:
        frames, names = None, None
    return Base(name, channels, files, frames, names, declared)


def save_reference(comp: Path, base: Base):
    np.savez(comp / "reference.npz", frames=base.frames, names=np.array(base.names))


# --------------------------------------------------------------------------- mutations


def split_dat(data: bytes):
    magic, version, hlen = _PREFIX.unpack_from(data, 0)
    header = json.loads(data[_PREFIX.size : _PREFIX.size + hlen])
    pos = _PREFIX.size + hlen + 4
    chunks = []
    for size, _ in header["chunks"]:
        chunks.append(data[pos : pos + size])
        pos += size
    return magic, version, header, chunks


def join_dat(magic, version, header, chunks, fix_table=True) -> bytes:
    header = dict(header)
    if fix_table:
        header["chunks"] = [[len(c), crc32(c)] for c in chunks]
    hb = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    return _PREFIX.pack(magic, version, len(hb)) + hb + struct.pack("<I", crc32(hb)) + b"".join(chunks)


def split_frame_chunk(chunk: bytes, has_choices: bool):
    """A format-3 frame chunk → (block choices bytes or None, tail tag, tail bytes): [varint length +
    choices] + one tag byte choosing the tail + the tail's bytes."""
    pos, choices = 0, None
    if has_choices:
        size, pos = read_varint(chunk)
        choices, pos = chunk[pos : pos + size], pos + size
    return choices, chunk[pos], chunk[pos + 1 :]


def join_frame_chunk(choices, tag: int, body: bytes, declared=None) -> bytes:
    """The mirror of split_frame_chunk; declared: a choices length to write instead of the real one."""
    head = b"" if choices is None else varint(len(choices) if declared is None else declared) + choices
    return head + bytes([tag]) + body


def has_block_choices(header: dict) -> bool:
    coder = header.get("coder")
    return isinstance(coder, dict) and coder.get("id") == "frame" and coder.get("block_select") is not None


def split_names(data: bytes):
    text = data.decode("utf-8")
    first, _, body = text.partition("\n")
    return json.loads(first.split(" ", 1)[1]), body


def join_names(head, body) -> bytes:
    return (f"#TEZIP-NAMES {json.dumps(head, sort_keys=True)}\n" + body).encode("utf-8")


def _leaf_paths(obj, path=()):
    """Paths to every field (dict keys, a few list items, the lists themselves)."""
    paths = [path] if path else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            paths += _leaf_paths(v, path + (k,))
    elif isinstance(obj, list):
        idx = range(len(obj)) if len(obj) <= 4 else [0, 1, len(obj) // 2, len(obj) - 1]
        for i in idx:
            paths += _leaf_paths(obj[i], path + (i,))
    return paths


def _get(obj, path):
    for p in path:
        obj = obj[p]
    return obj


def _set_field(header, rng, allow=None):
    """Mutate one field of a JSON header in place; returns a description."""
    paths = [p for p in _leaf_paths(header) if allow is None or p[0] in allow]
    path = paths[rng.integers(len(paths))]
    parent, key = _get(header, path[:-1]), path[-1]
    value = parent[key]
    op = rng.integers(5)
    if op == 0 and isinstance(value, list) and value:
        what = ["empty", "drop", "dup", "reverse"][rng.integers(4)]
        parent[key] = {"empty": [], "drop": value[:-1], "dup": value + value[-1:], "reverse": value[::-1]}[what]
        return f"{'.'.join(map(str, path))}: list {what}"
    if op == 1 and isinstance(parent, dict) and rng.integers(2):
        del parent[key]
        return f"{'.'.join(map(str, path))}: deleted"
    if op == 2 and isinstance(value, int) and not isinstance(value, bool):
        delta = int(rng.choice([-1, 1, 2, -2, 7]))
        parent[key] = value + delta
        return f"{'.'.join(map(str, path))}: {value} -> {value + delta}"
    new = EXTREMES[rng.integers(len(EXTREMES))]
    parent[key] = new
    return f"{'.'.join(map(str, path))}: -> {str(new)[:24]}"


def _other_base(bases, base_i, rng, same_shape=False):
    b = bases[base_i]
    choices = [i for i, o in enumerate(bases) if i != base_i and (not same_shape or o.channels == b.channels)]
    return bases[choices[rng.integers(len(choices))]] if choices else b


def mutate(bases: list[Base], base_i: int, kind: str, rng) -> tuple[dict, str]:
    """A mutated copy of base `base_i`'s files ({name: bytes or None for missing}) and a description."""
    base = bases[base_i]
    files = dict(base.files)
    fname = FILES[rng.integers(3)]
    data = bytearray(files[fname])
    if kind == "bitflip":
        k = int(rng.integers(1, 9))
        for pos in rng.integers(0, len(data) * 8, size=k):
            data[pos // 8] ^= 1 << (pos % 8)
        files[fname] = bytes(data)
        return files, f"{fname}: {k} bits"
    if kind == "bytes":
        k = int(rng.integers(1, 5))
        for pos in rng.integers(0, len(data), size=k):
            data[pos] = int(rng.choice([0, 0xFF, int(rng.integers(256))]))
        files[fname] = bytes(data)
        return files, f"{fname}: {k} bytes"
    if kind == "truncate":
        cut = int(rng.integers(0, len(data))) if rng.integers(2) else max(0, len(data) - int(rng.integers(1, 64)))
        files[fname] = bytes(data[:cut])
        return files, f"{fname}: {len(data)} -> {cut} bytes"
    if kind == "append":
        if rng.integers(2):
            extra = rng.integers(0, 256, size=int(rng.integers(1, 65)), dtype=np.uint8).tobytes()
        else:
            start = int(rng.integers(0, len(data)))
            extra = bytes(data[start:])
        files[fname] = bytes(data) + extra
        return files, f"{fname}: +{len(extra)} bytes"
    if kind == "splice":
        other = _other_base(bases, base_i, rng)
        b = other.files[fname]
        i, j = int(rng.integers(0, len(data) + 1)), int(rng.integers(0, len(b) + 1))
        if rng.integers(2):
            j = min(i, len(b))
        files[fname] = bytes(data[:i]) + b[j:]
        return files, f"{fname}: {base.name}[:{i}] + {other.name}[{j}:]"
    if kind == "swap_files":
        r = rng.integers(3)
        if r == 0:
            other = _other_base(bases, base_i, rng)
            files[fname] = other.files[fname]
            return files, f"{fname} from {other.name}"
        if r == 1:
            files[KEYFRAME_FILE], files[ENTROPY_FILE] = files[ENTROPY_FILE], files[KEYFRAME_FILE]
            return files, "key_frame.dat <-> entropy.dat"
        a, b = FILES[rng.integers(3)], FILES[rng.integers(3)]
        files[a] = base.files[b]
        return files, f"{a} := {b}"
    if kind == "delete_file":
        files[fname] = None
        return files, f"{fname} missing"
    if kind == "header_field":
        if fname == NAMES_FILE:
            head, body = split_names(files[fname])
            what = _set_field(head, rng)
            files[fname] = join_names(head, body)
            return files, f"{fname} {what}"
        magic, version, header, chunks = split_dat(files[fname])
        what = _set_field(header, rng)
        files[fname] = join_dat(magic, version, header, chunks, fix_table=False)
        return files, f"{fname} {what}"
    if kind == "prefix_field":
        fname = DAT_FILES[rng.integers(2)]
        data = bytearray(files[fname])
        magic, version, hlen = _PREFIX.unpack_from(data, 0)
        r = rng.integers(3)
        if r == 0:
            new_magic = [b"TEZIPKF\x00", b"TEZIPEN\x00", b"\x89PNG\r\n\x1a\n", b"\x00" * 8][rng.integers(4)]
            data[:8] = new_magic
            what = f"magic {new_magic!r}"
        elif r == 1:
            v = int(rng.choice([0, 2, 3, 255, 65535]))
            struct.pack_into("<H", data, 8, v)
            what = f"version {v}"
        else:
            v = int(rng.choice([0, 1, hlen - 1, hlen + 1, hlen + 4, len(data), 2**31, 2**32 - 1]))
            struct.pack_into("<I", data, 10, max(0, min(v, 2**32 - 1)))
            what = f"header length {hlen} -> {v}"
        files[fname] = bytes(data)
        return files, f"{fname}: {what}"
    if kind == "chunk_deep":
        fname = DAT_FILES[rng.integers(2)]
        magic, version, header, chunks = split_dat(files[fname])
        ci = int(rng.integers(len(chunks)))
        c = bytearray(chunks[ci])
        r = rng.integers(4)
        if r == 0 and c:
            for pos in rng.integers(0, len(c) * 8, size=int(rng.integers(1, 9))):
                c[pos // 8] ^= 1 << (pos % 8)
            what = "bits"
        elif r == 1 and c:
            for pos in rng.integers(0, len(c), size=int(rng.integers(1, 5))):
                c[pos] = int(rng.integers(256))
            what = "bytes"
        elif r == 2:
            c = c[: int(rng.integers(0, len(c) + 1))]
            what = "truncated"
        else:
            c = c + rng.integers(0, 256, size=int(rng.integers(1, 32)), dtype=np.uint8).tobytes()
            what = "extended"
        chunks[ci] = bytes(c)
        files[fname] = join_dat(magic, version, header, chunks)
        return files, f"{fname} chunk {ci} {what} (crc fixed)"
    if kind == "chunk_swap":
        fname = DAT_FILES[rng.integers(2)]
        magic, version, header, chunks = split_dat(files[fname])
        r = rng.integers(3)
        if r == 0 and len(chunks) > 1:
            i, j = rng.choice(len(chunks), size=2, replace=False)
            chunks[i], chunks[j] = chunks[j], chunks[i]
            what = f"chunks {i} <-> {j}"
        elif r == 1:
            other = _other_base(bases, base_i, rng, same_shape=True)
            ochunks = split_dat(other.files[fname])[3]
            i = int(rng.integers(len(chunks)))
            chunks[i] = ochunks[min(i, len(ochunks) - 1)]
            what = f"chunk {i} from {other.name}"
        else:
            i = int(rng.integers(len(chunks)))
            if rng.integers(2):
                del chunks[i]
                what = f"chunk {i} removed"
            else:
                chunks.insert(i, chunks[i])
                what = f"chunk {i} doubled"
        files[fname] = join_dat(magic, version, header, chunks)
        return files, f"{fname} {what} (crc fixed)"
    if kind == "chunk_parts":
        fname = DAT_FILES[rng.integers(2)]
        magic, version, header, chunks = split_dat(files[fname])
        if not chunks:
            fname = KEYFRAME_FILE
            magic, version, header, chunks = split_dat(files[fname])
        choices_present = fname == ENTROPY_FILE and has_block_choices(header)
        i = int(rng.integers(len(chunks)))
        choices, tag, body = split_frame_chunk(chunks[i], choices_present)
        r = int(rng.integers(3)) if choices_present else 0
        if r == 0:
            new = int(rng.choice([tag ^ 1, tag ^ 2, (tag + 4) % 256, 0, 1, 4, 5, 255, int(rng.integers(256))]))
            chunks[i] = join_frame_chunk(choices, new, body)
            what = f"chunk {i} tail tag {tag} -> {new}"
        elif r == 1:
            declared = max(0, len(choices) + int(rng.choice([-2, -1, 1, 2, 64, 2**20, 2**34, -len(choices)])))
            chunks[i] = join_frame_chunk(choices, tag, body, declared)
            what = f"chunk {i} block choices length {len(choices)} -> {declared}"
        else:
            j = int(rng.integers(len(chunks)))
            chunks[i] = join_frame_chunk(split_frame_chunk(chunks[j], True)[0], tag, body)
            what = f"chunk {i} with the block choices of chunk {j}"
        files[fname] = join_dat(magic, version, header, chunks)
        return files, f"{fname} {what} (crc fixed)"
    if kind == "names_edit":
        head, body = split_names(files[NAMES_FILE])
        names = body.split("\n")[:-1]
        i = int(rng.integers(len(names)))
        evil = ["../escape.png", "/tmp/abs.png", "sub/dir.png", "", ".hidden.png", "x.txt", "a\rb.png",
                "n" * 300 + ".png", names[(i + 1) % len(names)], "CON.png", "frame.PNG", "frame.jpg", "é€.png"]
        r = rng.integers(4)
        if r == 0:
            names[i] = evil[rng.integers(len(evil))]
            what = f"name {i} -> {names[i][:20]!r}"
        elif r == 1:
            names.append(names[i] + ".png")
            what = "name added"
        elif r == 2:
            del names[i]
            what = f"name {i} removed"
        else:
            names[i], names[-1] = names[-1], names[i]
            what = f"names {i} <-> last"
        body = "".join(n + "\n" for n in names)
        if rng.integers(4):  # mostly a careful edit that keeps the list's own checks valid
            head["crc32"], head["count"] = crc32(body.encode()), len(names)
            what += " (crc fixed)"
        files[NAMES_FILE] = join_names(head, body)
        return files, what
    raise ValueError(kind)


def case_plan(seed: int, index: int, n_bases: int):
    """(base index, kind, rng) of case `index`: the same whatever worker runs it."""
    rng = np.random.default_rng([seed, index])
    return int(rng.integers(n_bases)), KINDS[index % len(KINDS)], rng


# --------------------------------------------------------------------------- running one case


class CaseTimeout(BaseException):
    pass


class Decoder:
    """The real decoder (decompress_folder, as `tezip.py -u` runs it) with the real models: each
    case's files go into a folder of their own, the frames into a fresh output folder."""

    def __init__(self, models: dict):
        self.models = {c: Path(d) for c, d in models.items()}  # channels → MODEL_DIR
        self.tmp = Path(tempfile.mkdtemp(prefix="tezip-fuzz-"))
        self.comp, self.out = self.tmp / "comp", self.tmp / "out"
        self.comp.mkdir()

    def decode(self, files: dict, channels: int) -> Path:
        """decompress_folder on the files ({name: bytes or None for missing}) → the output folder.
        TezipError when the archive is refused."""
        from decompress.pipeline import decompress_folder

        for f in FILES:
            (self.comp / f).unlink(missing_ok=True)
        for f, data in files.items():
            if data is not None:
                (self.comp / f).write_bytes(data)
        shutil.rmtree(self.out, ignore_errors=True)
        with contextlib.redirect_stdout(io.StringIO()):  # its summary line
            decompress_folder(self.models[channels], self.comp, self.out)
        return self.out

    @staticmethod
    def read_back(out: Path):
        """(frames (N, H, W, C), names) of what decode wrote."""
        from frames.read import read_sequence

        sequence = read_sequence(out)
        return sequence.frames, list(sequence.names)

    def decode_frames(self, files: dict, channels: int):
        return self.read_back(self.decode(files, channels))


_traced_peak = [0]


def _stop_tracing():
    if tracemalloc.is_tracing():
        _traced_peak[0] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()


def run_case(decoder: Decoder, base: Base, files: dict, time_limit: float | None = None):
    """Decode one mutated archive. Returns (outcome, seconds, peak traced bytes, detail); the peak
    counts the Python-traced memory (numpy, bytes) of the whole decode (archive parsing, chunks,
    the model's state, the frames on their way to the sink), not the reading back afterwards."""
    from base.errors import TezipError

    if tracemalloc.is_tracing():
        tracemalloc.stop()
    _traced_peak[0] = 0
    tracemalloc.start()
    old = None
    if time_limit:
        def on_alarm(signum, frame):
            raise CaseTimeout()

        old = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, time_limit)
    t = time.perf_counter()
    try:
        out = decoder.decode(files, base.channels)
        _stop_tracing()
        frames, names = decoder.read_back(out)
        if frames.shape == base.frames.shape and np.array_equal(frames, base.frames) and names == list(base.names):
            outcome, detail = "exact", ""
        else:
            outcome, detail = "WRONG", "decoded frames (or their names) differ from the original"
    except TezipError as e:
        msg = str(e)
        outcome = "error" if msg and "\n" not in msg and "\r" not in msg else "BAD-MESSAGE"
        detail = msg[:200]
    except CaseTimeout:
        outcome, detail = "HANG", f"over {time_limit} s"
    except Exception as e:  # noqa: BLE001 - the point: nothing but TezipError may escape
        outcome = "CRASH"
        detail = f"{type(e).__name__}: {str(e)[:160]} @ {traceback.extract_tb(e.__traceback__)[-1].name}"
    finally:
        if time_limit:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
    seconds = time.perf_counter() - t
    _stop_tracing()
    peak = _traced_peak[0]
    if outcome in OK_OUTCOMES and peak > memory_bound(base):
        outcome, detail = "MEMORY", f"peak {peak} bytes > bound {memory_bound(base)}"
    return outcome, seconds, peak, detail


def memory_bound(base: Base) -> int:
    return MEMORY_SLACK + MEMORY_PER_DECLARED_BYTE * (base.declared_bytes + sum(len(v) for v in base.files.values()))


def run_cases(decoder, bases, seed, indices, time_limit=None, report=None):
    """Run cases in-process (the CI test and the workers). Yields one result dict per case."""
    for index in indices:
        base_i, kind, rng = case_plan(seed, index, len(bases))
        files, what = mutate(bases, base_i, kind, rng)
        outcome, seconds, peak, detail = run_case(decoder, bases[base_i], files, time_limit)
        yield dict(index=index, base=bases[base_i].name, kind=kind, mutation=what, outcome=outcome,
                   seconds=round(seconds, 4), peak=peak, detail=detail)


# --------------------------------------------------------------------------- the full run


def _worker(args):
    from prednet.device import select_device

    select_device(True)
    work = Path(args.work)
    meta = json.loads((work / "bases.json").read_text())
    bases = [load_base(work / m["name"], m["name"], m["channels"], m["declared"]) for m in meta["bases"]]
    decoder = Decoder({int(c): d for c, d in meta["models"].items()})
    for b in bases:  # warm up: one-time imports and kernel loading are not the cases' memory
        decoder.decode_frames(b.files, b.channels)
    for line in sys.stdin:
        lo, hi = map(int, line.split())
        for r in run_cases(decoder, bases, args.seed, range(lo, hi), time_limit=args.timeout):
            print(json.dumps(r), flush=True)
        print(json.dumps({"done": [lo, hi]}), flush=True)


def _train_models(root: Path):
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import train_tiny_model

    return {c: train_tiny_model(root / f"model{c}", c) for c in (3, 1)}


def prepare(work: Path, models: dict):
    decoder = Decoder(models)
    bases = build_bases(models, work)
    for b in bases:
        b.frames, b.names = decoder.decode_frames(b.files, b.channels)
        save_reference(work / b.name, b)
    meta = {"models": {str(c): str(d) for c, d in models.items()},
            "bases": [dict(name=b.name, channels=b.channels, declared=b.declared_bytes) for b in bases]}
    (work / "bases.json").write_text(json.dumps(meta))
    return bases


def _start_worker(args, work):
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--work", str(work), "--seed", str(args.seed),
           "--timeout", str(args.timeout)]
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="-1", TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            bufsize=1, env=env)


def run_parallel(args, work, n_cases):
    """Hand out blocks of cases to workers; a silent worker is killed and its case counted a hang."""
    import queue
    import threading

    block = 500  # cases per worker process (a fresh one per block keeps memory flat)
    pending = queue.Queue()
    for lo in range(0, n_cases, block):
        pending.put((lo, min(n_cases, lo + block)))
    results, lock = [], threading.Lock()
    startup = 300  # imports, model load and kernel loading before the first result

    def slot():
        while True:
            try:
                lo, hi = pending.get_nowait()
            except queue.Empty:
                return
            while lo < hi:
                proc = _start_worker(args, work)
                proc.stdin.write(f"{lo} {hi}\n")
                proc.stdin.flush()
                lines = queue.Queue()
                threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout] + [lines.put(None)], daemon=True).start()
                limit = startup + args.timeout
                while True:
                    try:
                        line = lines.get(timeout=limit)
                    except queue.Empty:
                        line = "HANG"
                    if line is None or line == "HANG":
                        died = None  # a dead worker's own exit status (negative: the signal that ended it)
                        if line is None:
                            try:
                                died = proc.wait(timeout=10)
                            except subprocess.TimeoutExpired:
                                pass
                        proc.kill()
                        proc.wait()
                        with lock:
                            results.append(dict(index=lo, base="?", kind=KINDS[lo % len(KINDS)], mutation="?",
                                                outcome="HANG" if line == "HANG" else "CRASH", seconds=float(limit),
                                                peak=0, detail="worker silent" if line == "HANG" else
                                                f"worker died (exit status {died})"))
                        lo += 1
                        break
                    try:
                        r = json.loads(line)
                    except ValueError:
                        continue  # stray output of a library
                    if "done" in r:
                        proc.stdin.close()
                        proc.wait()
                        lo = hi
                        break
                    with lock:
                        results.append(r)
                        if len(results) % 500 == 0:
                            print(f"  {len(results)} / {n_cases} cases", file=sys.stderr, flush=True)
                    lo = r["index"] + 1
                    limit = args.timeout + 5

    threads = [threading.Thread(target=slot) for _ in range(args.workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(results, key=lambda r: r["index"])


def summarize(results, seconds=None):
    lines = []
    counts = {k: {o: 0 for o in OUTCOMES} for k in KINDS}
    for r in results:
        counts[r["kind"]][r["outcome"]] += 1
    used = [o for o in OUTCOMES if any(counts[k][o] for k in KINDS) or o in OK_OUTCOMES]
    lines.append("| mutation kind | cases | " + " | ".join(used) + " | slowest s |")
    lines.append("|---" * (len(used) + 3) + "|")
    for k in KINDS:
        rk = [r for r in results if r["kind"] == k]
        slow = max((r["seconds"] for r in rk), default=0.0)
        lines.append(f"| {k} | {len(rk)} | " + " | ".join(str(counts[k][o]) for o in used) + f" | {slow:.2f} |")
    total = {o: sum(counts[k][o] for k in KINDS) for o in used}
    slow = max((r["seconds"] for r in results), default=0.0)
    lines.append(f"| **all** | {len(results)} | " + " | ".join(str(total[o]) for o in used) + f" | {slow:.2f} |")
    if results:
        worst = max(results, key=lambda r: r["seconds"])
        lines.append(f"\nslowest case: #{worst['index']} {worst['kind']} on {worst['base']} ({worst['mutation']}): "
                     f"{worst['seconds']:.2f} s, {worst['outcome']}")
        peak = max(results, key=lambda r: r["peak"])
        lines.append(f"largest traced peak: {peak['peak'] / 2**20:.1f} MiB (#{peak['index']} {peak['kind']}, {peak['outcome']})")
        times = np.array([r["seconds"] for r in results])
        lines.append(f"case seconds: median {np.median(times):.3f}, 99th percentile {np.percentile(times, 99):.3f}")
    if seconds is not None:
        lines.append(f"wall time {seconds:.0f} s")
    bad = [r for r in results if r["outcome"] not in OK_OUTCOMES]
    lines.append(f"failures: {len(bad)}")
    for r in bad[:30]:
        lines.append(f"  #{r['index']} {r['kind']} on {r['base']} ({r['mutation']}): {r['outcome']} {r['detail']}")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds one case may take")
    ap.add_argument("--model3", help="a trained 3-channel model folder (default: train a tiny one)")
    ap.add_argument("--model1", help="a trained 1-channel model folder (default: train a tiny one)")
    ap.add_argument("--json", help="write every case's result here")
    ap.add_argument("--replay", type=int, help="run only this case index, in this process, and print it")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return _worker(args)

    from prednet.device import select_device

    select_device(True)
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="tezip-fuzz-") as tmp:
        work = Path(tmp)
        if args.model3 and args.model1:
            models = {3: Path(args.model3), 1: Path(args.model1)}
        else:
            print("training the tiny models ...", file=sys.stderr, flush=True)
            models = _train_models(work)
        bases = prepare(work, models)
        if args.replay is not None:
            decoder = Decoder(models)
            for r in run_cases(decoder, bases, args.seed, [args.replay], time_limit=args.timeout):
                print(json.dumps(r, indent=2))
            return 0
        print(f"{len(bases)} base archives: " + ", ".join(f"{b.name} ({sum(len(v) for v in b.files.values())} bytes)" for b in bases),
              file=sys.stderr, flush=True)
        t1 = time.time()
        results = run_parallel(args, work, args.cases)
        elapsed = time.time() - t1
    print(f"decoder fuzz: {len(results)} cases, seed {args.seed}, {args.workers} workers, "
          f"per-case limit {args.timeout:g} s (setup {t1 - t0:.0f} s)\n")
    print(summarize(results, elapsed))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 1 if any(r["outcome"] not in OK_OUTCOMES for r in results) or len(results) < args.cases else 0


if __name__ == "__main__":
    sys.exit(main())
