#!/usr/bin/env python3
"""The established codecs TEZip has to beat, each run through its real tool on the same frames,
every round trip decoded and compared pixel by pixel (issue 4).

    python benchmarks/bench_codecs.py [IMAGE_DIR] [--first N] [--count N] [--codecs NAME ...]
        [--bounds 1 2 4 8] [--tezip-json PATH ...] [--out DIR] [--no-plot]

Defaults: IMAGE_DIR is ../shared/data/megamind beside the repository, frames 200-259 of it
(60 RGB frames 360x264, 17.1 MB raw); for any other folder every frame (--first 0, all).
Writes DIR/codecs.json, DIR/codecs.md (the table it prints) and DIR/codecs.png (ratio against
max abs error; needs matplotlib), DIR defaulting to benchmarks/out/ (git-ignored). A run takes
about 3 minutes on 2 cores. Never part of the test suite.

Anchors (`--codecs` names):

    x264rgb      ffmpeg libx264rgb -qp 0 -preset slow          lossless, raw H.264 stream
    x265         ffmpeg libx265 lossless=1, preset medium, gbrp lossless, raw HEVC stream
    jpegxl       imagecodecs JPEG-XL lossless, effort 7         lossless, one file per frame
    ffv1         ffmpeg ffv1 -level 3 (in Matroska)             lossless
    jpegls       imagecodecs JPEG-LS (CharLS), near=0           lossless, one file per frame
    zstd-diff16  zstd -19 on int16 frame differences            lossless, one stream
    zstd-diff8   zstd -19 on mod-256 frame differences          lossless, one stream
    sz3          SZ3 (pysz) abs bound, float32, each channel a 3-D (T, H, W) array
    sz3-int      SZ3 (pysz) abs bound, int32, same layout
    zfp          ZFP (zfpy) fixed accuracy = bound, float32, same layout

The first frame of the zstd-diff anchors is stored as is; each later frame as its difference to
the previous one. Lossy anchors (sz3, sz3-int, zfp) run at every --bounds value; their decoded
floats are rounded and clipped to 0..255 (both can only move toward the original integer, so the
bound still holds) and the error is measured on those pixels. Compressed bytes are the payload
only (stream or file bytes; shapes and bounds are taken as known, as for TEZip's header).
ffmpeg codecs use ffmpeg's default threading (every core); the Python codecs run one thread.

A codec whose tool is missing is skipped with the reason in the table. The command exits with
status 1 when any round trip fails its check (lossless: identical pixels; lossy: within bound).

Tools: ffmpeg from the OS (Debian: apt-get install ffmpeg), and benchmarks/requirements.txt.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from frames.read import list_image_files, read_image  # noqa: E402  (Pillow + numpy only)

DEFAULT_FRAMES = REPO_ROOT.parent / "shared" / "data" / "megamind"
DEFAULT_FIRST, DEFAULT_COUNT = 200, 60
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "out"
DEFAULT_BOUNDS = (1, 2, 4, 8)


# --------------------------------------------------------------------------- tools


def _module(name):
    """The module, or None when it is not installed (benchmark-only packages are optional)."""
    try:
        return __import__(name)
    except ImportError:
        return None


_FFMPEG_ENCODERS = None


def _ffmpeg_missing(encoder):
    """None when ffmpeg is on PATH and has `encoder`, else why not."""
    global _FFMPEG_ENCODERS
    if shutil.which("ffmpeg") is None:
        return "ffmpeg not found on PATH (Debian: apt-get install ffmpeg)"
    if _FFMPEG_ENCODERS is None:
        listing = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True)
        _FFMPEG_ENCODERS = {line.split()[1] for line in listing.stdout.splitlines() if len(line.split()) > 1}
    if encoder not in _FFMPEG_ENCODERS:
        return f"this ffmpeg has no {encoder} encoder"
    return None


def _python_missing(module, requirement):
    return None if _module(module) is not None else f"Python package {requirement} not installed"


class Anchor:
    """One anchor codec. encode(frames, bound, workdir) -> payload (bytes, list of bytes, or a
    file path); decode(payload, shape) -> uint8 frames. bound is None for lossless ones."""

    name = ""
    lossy = False
    setting = ""
    threads = "1"

    def missing(self):
        return None

    def size(self, payload):
        if isinstance(payload, Path):
            return payload.stat().st_size
        if isinstance(payload, (bytes, bytearray)):
            return len(payload)
        return sum(len(part) for part in payload)


class FFmpegAnchor(Anchor):
    """Raw rgb24 frames piped into ffmpeg; decoded back to rgb24 by ffmpeg."""

    threads = "ffmpeg default (all cores)"
    encoder = ""
    args = ()
    suffix = ""

    def missing(self):
        return _ffmpeg_missing(self.encoder)

    def encode(self, frames, bound, workdir):
        n, h, w, c = frames.shape
        out = Path(workdir) / f"{self.name}{self.suffix}"
        pix_fmt = "rgb24" if c == 3 else "gray"
        command = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
                   "-f", "rawvideo", "-pix_fmt", pix_fmt, "-s", f"{w}x{h}", "-r", "25", "-i", "pipe:0",
                   "-c:v", self.encoder, *self.ffmpeg_args(c), str(out)]
        subprocess.run(command, input=frames.tobytes(), check=True, capture_output=True)
        return out

    def ffmpeg_args(self, channels):
        return self.args

    def decode(self, payload, shape):
        pix_fmt = "rgb24" if shape[3] == 3 else "gray"
        command = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-i", str(payload),
                   "-f", "rawvideo", "-pix_fmt", pix_fmt, "pipe:1"]
        raw = subprocess.run(command, check=True, capture_output=True).stdout
        if len(raw) != math.prod(shape):
            raise RuntimeError(f"ffmpeg decoded {len(raw)} bytes, expected {math.prod(shape)}")
        return np.frombuffer(raw, dtype=np.uint8).reshape(shape)


class X264RGB(FFmpegAnchor):
    name, encoder, suffix = "x264rgb", "libx264rgb", ".h264"
    setting = "lossless, -qp 0 -preset slow"
    args = ("-qp", "0", "-preset", "slow", "-f", "h264")


class X265(FFmpegAnchor):
    name, encoder, suffix = "x265", "libx265", ".hevc"
    setting = "lossless, preset medium, gbrp"
    args = ("-preset", "medium", "-x265-params", "lossless=1:log-level=error", "-pix_fmt", "gbrp", "-f", "hevc")

    def ffmpeg_args(self, channels):
        return self.args if channels == 3 else tuple(a for a in self.args if a not in ("-pix_fmt", "gbrp"))


class FFV1(FFmpegAnchor):
    name, encoder, suffix = "ffv1", "ffv1", ".mkv"
    setting = "lossless, -level 3"
    args = ("-level", "3")


class JpegXL(Anchor):
    name, setting = "jpegxl", "lossless, effort 7, per frame"

    def missing(self):
        imagecodecs = _module("imagecodecs")
        if imagecodecs is None:
            return "Python package imagecodecs not installed"
        return None if imagecodecs.JPEGXL.available else "imagecodecs built without JPEG-XL"

    def encode(self, frames, bound, workdir):
        import imagecodecs

        return [imagecodecs.jpegxl_encode(_image(f), lossless=True, effort=7, numthreads=1) for f in frames]

    def decode(self, payload, shape):
        import imagecodecs

        return np.stack([imagecodecs.jpegxl_decode(p, numthreads=1) for p in payload]).reshape(shape)


class JpegLS(Anchor):
    name, setting = "jpegls", "lossless (near=0), per frame"

    def missing(self):
        imagecodecs = _module("imagecodecs")
        if imagecodecs is None:
            return "Python package imagecodecs not installed"
        return None if imagecodecs.JPEGLS.available else "imagecodecs built without JPEG-LS"

    def encode(self, frames, bound, workdir):
        import imagecodecs

        return [imagecodecs.jpegls_encode(_image(f)) for f in frames]

    def decode(self, payload, shape):
        import imagecodecs

        return np.stack([imagecodecs.jpegls_decode(p) for p in payload]).reshape(shape)


def _image(frame):
    """(H, W, C) -> what image codecs take: (H, W) for one channel."""
    return np.ascontiguousarray(frame[:, :, 0] if frame.shape[2] == 1 else frame)


class ZstdDiff(Anchor):
    """zstd -19 (one thread) over frame 0 followed by each frame minus the one before."""

    level = 19
    dtype = np.int16

    def missing(self):
        return _python_missing("zstandard", "zstandard")

    def encode(self, frames, bound, workdir):
        import zstandard

        if self.dtype == np.int16:
            diffs = frames.astype(np.int16)
            diffs[1:] -= frames[:-1]
        else:  # uint8 arithmetic wraps: differences mod 256
            diffs = frames.copy()
            diffs[1:] -= frames[:-1]
        return zstandard.ZstdCompressor(level=self.level).compress(diffs.tobytes())

    def decode(self, payload, shape):
        import zstandard

        raw = zstandard.ZstdDecompressor().decompress(payload)
        diffs = np.frombuffer(raw, dtype=self.dtype).reshape(shape)
        # Running sums in the same width: mod 256 for uint8; exact for int16 (stays in 0..255).
        return np.cumsum(diffs, axis=0, dtype=self.dtype).astype(np.uint8)


class ZstdDiff16(ZstdDiff):
    name, setting, dtype = "zstd-diff16", "zstd -19, int16 frame differences", np.int16


class ZstdDiff8(ZstdDiff):
    name, setting, dtype = "zstd-diff8", "zstd -19, mod-256 frame differences", np.uint8


class SZ3(Anchor):
    """SZ3 absolute error bound on each channel as one 3-D (T, H, W) array."""

    lossy = True
    name, setting, dtype = "sz3", "abs bound, float32, per channel 3-D", np.float32

    def missing(self):
        return _python_missing("pysz", "pysz (SZ3)")

    def encode(self, frames, bound, workdir):
        from pysz import sz, szConfig, szErrorBoundMode

        parts = []
        for ch in range(frames.shape[3]):
            plane = np.ascontiguousarray(frames[..., ch], dtype=self.dtype)
            config = szConfig(plane.shape)
            config.errorBoundMode = szErrorBoundMode.ABS
            config.absErrorBound = float(bound)
            compressed, _ = sz.compress(plane, config)
            parts.append(compressed.tobytes())
        return parts

    def decode(self, payload, shape):
        from pysz import sz

        planes = [sz.decompress(np.frombuffer(p, dtype=np.uint8), self.dtype, shape[:3])[0] for p in payload]
        return _to_pixels(np.stack(planes, axis=-1))


class SZ3Int(SZ3):
    name, setting, dtype = "sz3-int", "abs bound, int32, per channel 3-D", np.int32


class ZFP(Anchor):
    """ZFP fixed-accuracy mode (tolerance = bound) on each channel as one 3-D array."""

    lossy = True
    name, setting = "zfp", "tolerance = bound, float32, per channel 3-D"

    def missing(self):
        return _python_missing("zfpy", "zfpy")

    def encode(self, frames, bound, workdir):
        import zfpy

        return [zfpy.compress_numpy(np.ascontiguousarray(frames[..., ch], dtype=np.float32), tolerance=float(bound))
                for ch in range(frames.shape[3])]

    def decode(self, payload, shape):
        import zfpy

        return _to_pixels(np.stack([zfpy.decompress_numpy(p) for p in payload], axis=-1).reshape(shape))


def _to_pixels(values):
    """Decoded floats -> uint8 pixels: round to the nearest integer and clip to 0..255. The original
    is an integer in 0..255, so neither step can take a value further than its bound from it."""
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


ANCHORS = [X264RGB(), X265(), JpegXL(), FFV1(), JpegLS(), ZstdDiff16(), ZstdDiff8(), SZ3(), SZ3Int(), ZFP()]
ANCHOR_NAMES = [a.name for a in ANCHORS]


# --------------------------------------------------------------------------- measuring


def load_frames(folder, first, count):
    paths = list_image_files(folder)[first:]
    if count is not None:
        paths = paths[:count]
    if not paths:
        sys.exit(f"no frames in {folder} from index {first}")
    frames = [read_image(p)[0] for p in paths]
    if len({f.shape for f in frames}) != 1:
        sys.exit("frames differ in size or channels")
    return np.stack(frames), [p.name for p in paths]


def error_stats(decoded, original):
    err = np.abs(decoded.astype(np.int16) - original.astype(np.int16))
    mse = float(np.mean(err.astype(np.float64) ** 2))
    psnr = None if mse == 0 else 10 * math.log10(255**2 / mse)  # None: identical (infinite PSNR)
    return int(err.max()), psnr


def measure(anchor, frames, bound, workdir):
    raw_mb = frames.nbytes / 1e6
    n = len(frames)
    t = time.perf_counter()
    payload = anchor.encode(frames, bound, workdir)
    t_c = time.perf_counter() - t
    size = anchor.size(payload)
    t = time.perf_counter()
    decoded = anchor.decode(payload, frames.shape)
    t_d = time.perf_counter() - t
    if decoded.shape != frames.shape:
        raise RuntimeError(f"decoded shape {decoded.shape}, expected {frames.shape}")
    max_err, psnr = error_stats(decoded, frames)
    ok = max_err == 0 if bound is None else max_err <= bound
    return dict(codec=anchor.name, setting=anchor.setting, lossy=anchor.lossy, bound=bound, threads=anchor.threads,
                bytes=size, ratio=frames.nbytes / size, max_abs_error=max_err, psnr=psnr,
                compress_s=t_c, decompress_s=t_d, compress_MBps=raw_mb / t_c, decompress_MBps=raw_mb / t_d,
                compress_fps=n / t_c, decompress_fps=n / t_d, check="ok" if ok else "FAIL")


def tool_versions():
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    if shutil.which("ffmpeg"):
        first = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.splitlines()
        versions["ffmpeg"] = first[0] if first else "?"
    from importlib import metadata

    for package in ("imagecodecs", "zfpy", "pysz", "zstandard", "matplotlib"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return versions


def load_tezip_rows(path):
    """Rows of benchmarks/bench_tezip.py --json, as table rows of codec 'tezip-<prediction>'."""
    rows = []
    for r in json.loads(Path(path).read_text()):
        bound = float(r["bound"])
        psnr = r.get("psnr")
        rows.append(dict(codec="tezip-" + str(r.get("prediction", "?")).replace(" ", "-"), setting=f"{r.get('keyframes', '?')} keyframes",
                         lossy=bound > 0, bound=bound if bound > 0 else None, threads="",
                         bytes=r["bytes"], ratio=r["ratio"], max_abs_error=r["max_abs_error"],
                         psnr=None if psnr is None or (isinstance(psnr, float) and math.isinf(psnr)) else psnr,
                         compress_s=r["compress_s"], decompress_s=r["decompress_s"],
                         compress_MBps=r["compress_MBps"], decompress_MBps=r["decompress_MBps"],
                         compress_fps=r["compress_fps"], decompress_fps=r["decompress_fps"],
                         check="ok" if r["max_abs_error"] <= bound else "FAIL", source=str(path)))
    return rows


# --------------------------------------------------------------------------- output

HEADER = ("| codec | setting | bound | bytes | ratio | max abs err | PSNR dB | compress s | decompress s | "
          "comp MB/s | decomp MB/s | comp fps | decomp fps | check |")


def _fmt(value, spec):
    return "–" if value is None else format(value, spec)


def markdown(result):
    d = result["data"]
    lines = [f"{d['frames']} frames {d['width']}x{d['height']}x{d['channels']} from {d['folder']} "
             f"({d['first_name']} … {d['last_name']}), {d['raw_bytes'] / 1e6:.1f} MB raw", "",
             HEADER, "|" + "---|" * (HEADER.count("|") - 1)]
    for r in result["rows"]:
        if "skipped" in r:
            lines.append(f"| {r['codec']} | {r['setting']} | | | | | | | | | | | | skipped: {r['skipped']} |")
            continue
        bound = "lossless" if r["bound"] is None else f"{r['bound']:g}"
        psnr = "inf" if r["psnr"] is None else f"{r['psnr']:.2f}"
        lines.append(
            f"| {r['codec']} | {r['setting']} | {bound} | {r['bytes']} | {r['ratio']:.2f} | {r['max_abs_error']} | "
            f"{psnr} | {r['compress_s']:.2f} | {r['decompress_s']:.2f} | {r['compress_MBps']:.2f} | "
            f"{r['decompress_MBps']:.2f} | {r['compress_fps']:.1f} | {r['decompress_fps']:.1f} | {r['check']} |")
    return "\n".join(lines) + "\n"


def plot(result, path):
    """Ratio against measured max abs error: lossy codecs as lines, lossless as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    rows = [r for r in result["rows"] if "skipped" not in r]
    fig, ax = plt.subplots(figsize=(9, 6))
    cycle = plt.get_cmap("Dark2").colors  # lossless lines: a palette apart from the lossy lines
    lossless = [r for r in rows if not r["lossy"] and not r["codec"].startswith("tezip")]
    for i, r in enumerate(sorted(lossless, key=lambda r: -r["ratio"])):
        ax.axhline(r["ratio"], color=cycle[i % len(cycle)], linestyle="--", linewidth=1,
                   label=f"{r['codec']} (lossless) {r['ratio']:.2f}")
    groups = {}
    for r in rows:
        if r["lossy"] or r["codec"].startswith("tezip"):
            groups.setdefault(r["codec"], []).append(r)
    markers = {"sz3": "o", "sz3-int": "s", "zfp": "^"}
    for codec, group in groups.items():
        group.sort(key=lambda r: (r["bound"] or 0))
        tezip = codec.startswith("tezip")
        ax.plot([r["max_abs_error"] for r in group], [r["ratio"] for r in group],
                marker="*" if tezip else markers.get(codec, "o"), markersize=11 if tezip else 6,
                linewidth=2.5 if tezip else 1.5,
                label=codec.upper() if tezip else codec)
        for r in group:
            if r["bound"] is not None:
                ax.annotate(f"{r['bound']:g}", (r["max_abs_error"], r["ratio"]), textcoords="offset points",
                            xytext=(4, -10), fontsize=7, color="gray")
    d = result["data"]
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.set_xlabel("max abs error after decoding (grey labels: requested bound)")
    ax.set_ylabel("compression ratio (raw bytes / compressed bytes)")
    ax.set_title(f"{d['frames']} frames {d['width']}x{d['height']}x{d['channels']}, {d['raw_bytes'] / 1e6:.1f} MB raw")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", nargs="?", default=str(DEFAULT_FRAMES))
    ap.add_argument("--first", type=int, help="first frame index (default 200 for the default folder, else 0)")
    ap.add_argument("--count", type=int, help="number of frames (default 60 for the default folder, else all)")
    ap.add_argument("--codecs", nargs="+", choices=ANCHOR_NAMES, default=ANCHOR_NAMES, metavar="NAME",
                    help=f"anchors to run (default all: {' '.join(ANCHOR_NAMES)})")
    ap.add_argument("--bounds", type=float, nargs="+", default=list(DEFAULT_BOUNDS), help="abs bounds of the lossy anchors")
    ap.add_argument("--tezip-json", nargs="+", default=[], metavar="PATH",
                    help="benchmarks/bench_tezip.py --json output(s): TEZip rows in the table, points in the plot")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="output folder (default benchmarks/out)")
    ap.add_argument("--no-plot", action="store_true")
    args = ap.parse_args(argv)

    default_folder = Path(args.images).resolve() == DEFAULT_FRAMES.resolve()
    first = args.first if args.first is not None else (DEFAULT_FIRST if default_folder else 0)
    count = args.count if args.count is not None else (DEFAULT_COUNT if default_folder else None)
    frames, names = load_frames(args.images, first, count)
    n, h, w, c = frames.shape
    print(f"{n} frames {w}x{h}x{c}, {frames.nbytes / 1e6:.1f} MB raw", flush=True)

    rows = []
    failed = False
    with tempfile.TemporaryDirectory(prefix="bench_codecs_") as workdir:
        for anchor in (a for a in ANCHORS if a.name in args.codecs):
            reason = anchor.missing()
            if reason:
                print(f"  {anchor.name}: skipped ({reason})", flush=True)
                rows.append(dict(codec=anchor.name, setting=anchor.setting, lossy=anchor.lossy, skipped=reason))
                continue
            for bound in (args.bounds if anchor.lossy else [None]):
                try:
                    row = measure(anchor, frames, bound, workdir)
                except Exception as error:  # a broken tool must not hide the other anchors
                    message = " ".join(str(error).split())[:200]
                    print(f"  {anchor.name}: error ({type(error).__name__}: {message})", flush=True)
                    rows.append(dict(codec=anchor.name, setting=anchor.setting, lossy=anchor.lossy,
                                     skipped=f"error: {type(error).__name__}: {message}"))
                    failed = True
                    break
                failed |= row["check"] != "ok"
                print(f"  {anchor.name} {'' if bound is None else f'bound {bound:g} '}ratio {row['ratio']:.2f} "
                      f"max err {row['max_abs_error']} ({row['compress_s']:.1f} s + {row['decompress_s']:.1f} s) "
                      f"{row['check']}", flush=True)
                rows.append(row)
    for path in args.tezip_json:
        rows.extend(load_tezip_rows(path))

    result = dict(
        data=dict(folder=str(Path(args.images).resolve()), first=first, frames=n, height=h, width=w, channels=c,
                  raw_bytes=int(frames.nbytes), first_name=names[0], last_name=names[-1]),
        tools=tool_versions(), cpu_count=os.cpu_count(), rows=rows,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "codecs.json").write_text(json.dumps(result, indent=2))
    table = markdown(result)
    (out / "codecs.md").write_text(table)
    print()
    print(table)
    if not args.no_plot:
        if _module("matplotlib") is None:
            print("plot skipped: matplotlib not installed (pip install -r benchmarks/requirements.txt)")
        else:
            plot(result, out / "codecs.png")
            print(f"plot: {out / 'codecs.png'}")
    print(f"json: {out / 'codecs.json'}  table: {out / 'codecs.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
