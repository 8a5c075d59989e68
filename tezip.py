#!/usr/bin/env python3
"""TEZip: compress time-evolutionary image sequences with PredNet predictions.

    python tezip.py -l MODEL_DIR DATA_DIR                 train a model on train_data_create.py output
    python tezip.py -c MODEL_DIR IMAGE_DIR OUT_DIR -p N (-w N | -t MSE) -m MODE -b B [B2]
    python tezip.py -u MODEL_DIR COMP_DIR OUT_DIR         decompress and verify

This file only parses arguments, picks GPU or CPU, calls train / compress / decompress and maps
user errors to one line and a non-zero exit code.
"""

import argparse
import math
import os
import signal
import sys

# The numba kernels' OpenMP threads sleep while they wait for work instead of spinning (unless the
# user says otherwise): spinning threads hold the cores that the frame threads and other programs
# need; on a busy 2-core machine that made -c 1.5-1.8x slower. Set before OpenMP is loaded.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


class OneLineParser(argparse.ArgumentParser):
    """Argument errors as one clear line (exit code 2), not a usage dump."""

    def error(self, message):
        self.exit(2, f"tezip.py: error: {message} (see python tezip.py -h)\n")


def build_parser():
    p = OneLineParser(
        prog="tezip.py",
        description="TEZip: lossless and error-bounded compression of image sequences with PredNet predictions.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  python train_data_create.py frames_by_sequence/ data/\n"
            "  python tezip.py -l model/ data/ --epochs 20 --crop 64 64\n"
            "  python tezip.py -c model/ images/ comp/ -p 1 -w 10 -m abs -b 0      (lossless)\n"
            "  python tezip.py -c model/ images/ comp/ -p 1 -t 0.002 -m abs -b 2   (|error| <= 2)\n"
            "  python tezip.py -u model/ comp/ restored/\n"
            "  python tezip.py -c default runs/ comp/ -w 10 -m abs -b 0     (bundled model; runs/<seq>/ each)\n"
        ),
    )
    job = p.add_argument_group("what to do (exactly one)")
    job.add_argument("-l", "--learn", nargs=2, metavar=("MODEL_DIR", "DATA_DIR"),
                     help="train PredNet on the .hkl files in DATA_DIR (from train_data_create.py), write MODEL_DIR")
    job.add_argument("-c", "--compress", nargs=3, metavar=("MODEL_DIR", "IMAGE_DIR", "OUT_DIR"),
                     help="compress the images of IMAGE_DIR (in name order; numbered names by number) into OUT_DIR. MODEL_DIR 'default' is "
                          "the bundled model. An IMAGE_DIR holding only sequence folders is a batch: each "
                          "IMAGE_DIR/<name> goes to OUT_DIR/<name> (finished ones are skipped unless --overwrite)")
    job.add_argument("-u", "--uncompress", nargs=3, metavar=("MODEL_DIR", "COMP_DIR", "OUT_DIR"),
                     help="decompress COMP_DIR into OUT_DIR, verifying every frame (a folder of archive "
                          "folders is a batch, restored as the same tree)")

    comp = p.add_argument_group("compression")
    comp.add_argument("-p", "--preprocess", type=int, default=0, metavar="N",
                      help="warm-up: the first N frames are keyframes, stored exactly (the first frame always is)")
    comp.add_argument("-w", "--window", type=int, metavar="N",
                      help="static window prediction (SWP): a new keyframe after every N predicted frames")
    comp.add_argument("-t", "--threshold", type=float, metavar="MSE",
                      help="dynamic window prediction (DWP): a new keyframe when the window's running mean "
                           "squared error (pixels scaled to [0,1]) exceeds MSE")
    comp.add_argument("--loop", choices=("closed", "open"), default="closed",
                      help="closed (default): each frame is predicted from the decoded frames before it in its "
                           "window; open: TEZip's original extrapolation from the keyframe alone")
    comp.add_argument("--order", choices=("sequential", "hierarchical", "auto"), default="sequential",
                      help="sequential (default): each frame predicted from the frames before it (the model, the "
                           "previous frame moved); hierarchical: each window coded in bidirectional B-frame order by "
                           "fitted interpolation, without a model: for smooth simulated fields and detector runs "
                           "(abs mode, -w only); auto: codes the first, middle and last window both ways and keeps the smaller "
                           "(sequential where hierarchical cannot serve)")
    comp.add_argument("--block", type=int, default=16, metavar="N",
                      help="per N x N block, predict from PredNet or from the previous decoded frame, whichever "
                           "is closer (static backgrounds repeat exactly); 0 uses PredNet everywhere. Default 16")
    comp.add_argument("--motion", type=int, default=4, metavar="R",
                      help="with --block: the previous frame may also be moved by up to R pixels each way per block "
                           "(motion search); 0 takes it unmoved. Default 4")
    comp.add_argument("--global-motion", type=int, default=128, metavar="G",
                      help="with --block: one displacement of the whole previous frame (a camera pan) of up to G "
                           "pixels each way is estimated per frame, and each block also searches around it; "
                           "0 = off. Default 128")
    comp.add_argument("--no-intra", action="store_true",
                      help="never code a predicted frame on its own pixels (by default a frame is coded like a "
                           "keyframe when that is smaller: scene cuts)")
    comp.add_argument("--no-colour", action="store_true",
                      help="no reversible colour transform (B, G-B, R-G) of lossless RGB keyframes and residuals")
    comp.add_argument("-m", "--mode", default="abs", metavar="MODE",
                      help="error-bound mode: abs (|x-x'| <= b), rel (b x value range of the frame's channel), "
                           "absrel (two values: the tighter of abs and rel), pwrel (|x-x'| <= b|x|). Default abs")
    comp.add_argument("-b", "--bound", nargs="+", type=float, default=[0.0], metavar="B",
                      help="error bound(s) for the mode; 0 means lossless (bit-exact). Default 0")
    comp.add_argument("--quantizer", choices=("auto", "linquant", "medquant", "runmerge"), default="auto",
                      help="lossy residual quantizer: linquant puts each residual in a bin of width 2b+1 (abs mode "
                           "only; keyframes are then quantized within b too); medquant first predicts each residual "
                           "from its decoded neighbours (MED), as SZ does (abs only); runmerge merges runs along rows "
                           "(every mode; exact keyframes). auto (default): linquant for abs, runmerge otherwise")
    comp.add_argument("-n", "--no_entropy", action="store_true", help="skip the entropy-encoding stage")
    comp.add_argument("--lanes", type=int, metavar="K",
                      help="predict K independent parts of the sequence at once (batch size of the model); "
                           "with -t each part starts with a keyframe. Default: chosen from sequence and frame size")
    comp.add_argument("--zstd-level", type=int, default=None, metavar="L", help="zstd level 1-22 for what zstd codes under -n (default 19: smallest in reasonable time; 3 compresses "
                           "much faster, about 11%% larger)")

    comp.add_argument("--report", action="store_true",
                      help="also write OUT_DIR/report.png: bytes and prediction MSE per frame with the keyframes "
                           "(and -t threshold) marked, and one frame, its prediction and the residual as a heat map")
    comp.add_argument("--report-frame", type=int, metavar="N",
                      help="the frame --report shows (default: the worst-predicted frame); implies --report")

    scale = p.add_argument_group(
        "scale-out on Dask (-c and -u; needs the distributed package)",
        "Each sequence is cut at keyframes into segments of whole windows, one task each; a batch's\n"
        "sequences run side by side. The archive is byte-identical whatever the number of workers.\n"
        "Under -t (dynamic windows) keyframes are placed while coding, so such a sequence is\n"
        "compressed as one task (it still decompresses in segments).")
    scale.add_argument("--workers", type=int, metavar="N",
                       help="run on a local Dask cluster of N worker processes (one thread each)")
    scale.add_argument("--scheduler", metavar="ADDRESS",
                       help="run on an existing Dask cluster, e.g. tcp://host:8786 (dask-jobqueue's SLURMCluster; "
                            "the workers must see the same files and paths)")

    learn = p.add_argument_group("training (-l)")
    learn.add_argument("--epochs", type=int, default=150,
                       help="epochs (default 150); 0 with --skip: the least-squares linear filter alone (seconds)")
    learn.add_argument("--steps", type=int, default=125, help="batches per epoch (default 125)")
    learn.add_argument("--batch", type=int, default=4, help="sequences per batch (default 4)")
    learn.add_argument("--nt", type=int, default=10, help="frames per training sequence (default 10)")
    learn.add_argument("--crop", type=int, nargs=2, metavar=("H", "W"),
                       help="train on random H x W crops (fast on a CPU; the model serves any frame size). "
                            "Default: whole frames")
    learn.add_argument("--stack", type=int, nargs="+", default=[48, 96, 192], metavar="C",
                       help="channels of the hidden layers (default 48 96 192, TEZip's)")
    learn.add_argument("--skip", type=skip_size, default=0, metavar="K",
                       help="predict a correction to a K x K linear filter of the previous frames (odd K), its taps "
                            "fitted by least squares before the epochs: learns smooth dynamics (drift, diffusion) in "
                            "seconds. auto: try sizes from 3x3 on 2 frames to 9x9 on 8 (fewer than --nt) and keep the "
                            "one that predicts the validation frames best (a minute or two on 256x256 grayscale "
                            "frames, several on RGB). Default 0: PredNet as published")
    learn.add_argument("--skip-frames", type=int, default=2, metavar="N",
                       help="with --skip: the previous frames the linear filter sees, 2 to 8 (default 2); more "
                            "average more frames' noise (smooth simulated fields)")
    learn.add_argument("--frame-input", action="store_true",
                       help="with --skip: PredNet's first layer also sees the previous frames (normalised), not only "
                            "its errors, so its correction can depend on the field's values (nonlinear dynamics)")
    learn.add_argument("--train-skip", action="store_true",
                       help="with --skip: the epochs also move the fitted taps (default: they stay as fitted and the "
                            "epochs train PredNet's correction only)")
    learn.add_argument("--lr", type=float, default=1e-3, metavar="RATE",
                       help="Adam's learning rate (default 1e-3, PredNet's; a tenth of it for the last quarter of the "
                            "epochs)")
    learn.add_argument("--val-sequences", type=int, default=100, help="validation sequences per epoch (default 100)")
    learn.add_argument("--seed", type=int, default=0, help="random seed (default 0)")

    common = p.add_argument_group("common")
    common.add_argument("--overwrite", action="store_true",
                        help="allow a non-empty OUT_DIR (its archive or image files are replaced); -l: a MODEL_DIR "
                             "that holds a model (replaced: archives made with it no longer decompress)")
    common.add_argument("--threads", type=int, metavar="N",
                        help="-c/-u: frames worked on at once in this process (lossless frames coded side by side, "
                             "chunks parsed ahead, image files written); default: the cores, up to 4; 1: one at a "
                             "time. Never changes the archive")
    common.add_argument("-f", "--force", action="store_true", help="force CPU even if a GPU is present")
    common.add_argument("-v", "--verbose", action="store_true", help="print details (per-epoch losses, per-frame errors, stage sizes)")
    return p


MAX_SKIP = 15  # the linear skip's largest filter (--skip): 13 x 13 over 8 frames did worse than 9 x 9 (vortex, detector)
MAX_HIDDEN_LAYERS = 8  # --stack: each layer halves the frame; 8 already needs 128-pixel-aligned frames
MAX_CHANNELS = 1024  # --stack: 5x TEZip's widest layer (192); wider ones exhaust memory before they train


def check_job(p, args):
    jobs = [j for j in ("learn", "compress", "uncompress") if getattr(args, j) is not None]
    if len(jobs) != 1:
        p.error("give exactly one of -l (train), -c (compress), -u (decompress)")
    names = {"learn": ("MODEL_DIR", "DATA_DIR"), "compress": ("MODEL_DIR", "IMAGE_DIR", "OUT_DIR"),
             "uncompress": ("MODEL_DIR", "COMP_DIR", "OUT_DIR")}[jobs[0]]
    for name, value in zip(names, getattr(args, jobs[0])):
        # "" is the current folder to the OS: an unset shell variable would run on it; a blank name
        # is a slip more often than a folder (./' ' still names one)
        if not value.strip():
            p.error(f"{name} is empty or blank ({value!r}); give a path (. for the current folder)")
        if name == "IMAGE_DIR" and value.startswith("::"):
            p.error(f"{name} {value!r} names no HDF5 file before '::'")
    return jobs[0]


def codec_plan(args):
    """The compression options, validated once (sequence.plan raises OptionError, exit code 2)."""
    from sequence.plan import CodecPlan

    return CodecPlan.make(
        warmup=args.preprocess, window=args.window, threshold=args.threshold, loop=args.loop, block=args.block,
        motion=args.motion, mode=args.mode, bounds=tuple(args.bound), entropy=not args.no_entropy, lanes=args.lanes,
        zstd_level=args.zstd_level, quantizer=args.quantizer, order=args.order,
        global_range=args.global_motion, intra=not args.no_intra, colour=not args.no_colour,
    )


def run_flags(args, device):
    from sequence.plan import RunFlags

    return RunFlags(overwrite=args.overwrite, verbose=args.verbose, device=device,
                    report=args.report or args.report_frame is not None, report_frame=args.report_frame)


def skip_size(text):
    """argparse type of -l --skip: an int, or "auto"."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an odd filter size or auto (got {text!r})") from None


def run_learn(args):
    from prednet.train import TrainOptions, train

    model_dir, data_dir = args.learn
    options = TrainOptions(
        epochs=args.epochs, steps_per_epoch=args.steps, batch_size=args.batch, nt=args.nt,
        val_sequences=args.val_sequences, crop=tuple(args.crop) if args.crop else None,
        hidden_stack=tuple(args.stack), seed=args.seed, verbose=args.verbose, skip=args.skip,
        skip_frames=args.skip_frames, frame_input=args.frame_input, train_skip=args.train_skip,
        learning_rate=args.lr, overwrite=args.overwrite,
    )
    r = train(model_dir, data_dir, options)
    if r.skip_size and not args.verbose:  # -v said it when it chose, each size's loss before it
        K, N = r.skip_size
        print(f"--skip auto chose {K}x{K} taps on {N} frames in {r.skip_search_seconds:.1f} s (the filter's validation "
              f"loss {r.skip_errors[f'{K}x{K}/{N}']:.5f}; tried {', '.join(r.skip_errors)})")
    what = (f"trained {r.epochs} epoch{'s' if r.epochs != 1 else ''} in {r.seconds:.1f} s ({r.seconds_per_epoch:.1f} s/epoch): "
            f"val loss {r.val_loss[0]:.5f} (epoch 1) -> best {r.best_val_loss:.5f} "
            + (f"(epoch {r.best_epoch})" if r.best_epoch else "(the least-squares start: no epoch beat it)")
            if r.epochs else
            f"fitted the linear skip alone in {r.seconds:.1f} s: val loss {r.best_val_loss:.5f}")
    print(
        f"{what}; "
        f"black-frame baseline {r.blank_val_loss:.5f}, previous frame {r.previous_val_loss:.5f}, linear "
        f"extrapolation {r.extrapolation_val_loss:.5f}; model written to {model_dir}"
    )


def run_compress(args, plan, flags):
    """Returns the number of sequences that failed (batch mode) or 0."""
    from base.batch import sequence_folders
    from compress.batch import compress_batch
    from compress.pipeline import compress_folder

    model_dir, image_dir, out_dir = args.compress
    if on_cluster(args):
        from cluster import compress_on_cluster

        return compress_on_cluster(model_dir, image_dir, out_dir, plan, flags, args.workers, args.scheduler)
    if sequence_folders(image_dir, hdf5_files=True):
        return _failures(compress_batch(model_dir, image_dir, out_dir, plan, flags))
    compress_folder(model_dir, image_dir, out_dir, plan, flags)
    return 0


def on_cluster(args):
    """True when --workers or --scheduler asks for Dask."""
    return args.workers is not None or args.scheduler is not None


def check_cluster(p, args, job):
    """--workers / --scheduler: -c and -u only, valid values (exit code 2 otherwise)."""
    from base.errors import OptionError
    from cluster.client import check_cluster_options

    if not on_cluster(args):
        return
    if job == "learn":
        p.error("--workers and --scheduler serve -c and -u (training runs in this process)")
    try:
        check_cluster_options(args.workers, args.scheduler)
    except OptionError as e:
        p.error(str(e))


# The option groups (build_parser) that only one job reads.
_ONLY_FOR = {"compression": ("compress", "-c"), "training (-l)": ("learn", "-l")}


def ignored_options(p, args, job):
    """The options given (not at their defaults) that `job` does not read, as they are spelled."""
    given = []
    for group in p._action_groups:
        only = _ONLY_FOR.get(group.title)
        if only is None or only[0] == job:
            continue
        for action in group._group_actions:
            if getattr(args, action.dest, None) != action.default:
                given.append("/".join(action.option_strings))
    if job == "learn" and args.threads is not None:
        given.append("--threads")
    return given


def note_ignored_options(p, args, job):
    """One line on stderr naming options that do not apply to this job (they are ignored, so that
    one set of options can serve a script's -c and -u alike)."""
    given = ignored_options(p, args, job)
    if given:
        flag = {"compress": "-c", "uncompress": "-u", "learn": "-l"}[job]
        print(f"tezip.py: note: {', '.join(given)} {'does' if len(given) == 1 else 'do'} not apply to {flag}: ignored",
              file=sys.stderr)


def note_block_0(p, args):
    """With --block 0 the model predicts every pixel: one note line naming --motion and
    --global-motion when given (after the options were found valid)."""
    moved = [flag for flag, dest in (("--motion", "motion"), ("--global-motion", "global_motion"))
             if getattr(args, dest) != p.get_default(dest)]
    if args.block == 0 and moved:
        print(f"tezip.py: note: {' and '.join(moved)} {'does' if len(moved) == 1 else 'do'} not apply with --block 0 "
              "(the model predicts every pixel): ignored", file=sys.stderr)


def _failures(results):
    return sum(r.status == "FAILED" for r in results)


def run_uncompress(args, flags):
    """Returns the number of sequences that failed (batch mode) or 0."""
    from base.batch import sequence_folders
    from decompress.batch import decompress_batch
    from decompress.pipeline import decompress_folder

    model_dir, comp_dir, out_dir = args.uncompress
    if on_cluster(args):
        from cluster import decompress_on_cluster

        return decompress_on_cluster(model_dir, comp_dir, out_dir, flags, args.workers, args.scheduler)
    if sequence_folders(comp_dir):
        return _failures(decompress_batch(model_dir, comp_dir, out_dir, flags))
    decompress_folder(model_dir, comp_dir, out_dir, flags)
    return 0


INTERRUPTED = "tezip.py: interrupted; no partial output was left"


def main(argv=None):
    # Ctrl-C (or `kill`) is one line from the first instant: importing numba and the codec takes
    # a second on a busy machine before _main installs the handler that also cleans up.
    early = []

    def interrupted_early(signum, frame):
        early.append(signum)
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupted_early) for sig in (signal.SIGINT, signal.SIGTERM)}
    unraisable = sys.unraisablehook

    def quiet_interrupts(report):
        # Ctrl-C raised inside a library's callback (numba's compiler calls back from C while it
        # caches a kernel) cannot propagate and was printed as a traceback after a while. The
        # signal is recorded (publish.signals_received), so the run still publishes nothing and
        # ends with the usual line.
        if not isinstance(report.exc_value, KeyboardInterrupt):
            unraisable(report)

    sys.unraisablehook = quiet_interrupts
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return 128 + (early[0] if early else signal.SIGINT)
    finally:
        sys.unraisablehook = unraisable
        for sig, handler in previous.items():
            if handler is not None:
                signal.signal(sig, handler)


def _main(argv):
    p = build_parser()
    args = p.parse_args(argv)
    threads = os.environ.get("NUMBA_NUM_THREADS")
    if threads is not None and not (threads.strip().isdigit() and int(threads) >= 1):
        # numba refuses it at import, deep inside, with a traceback
        print(f"tezip.py: error: NUMBA_NUM_THREADS={threads!r} is not a thread count: give a positive integer or unset "
              "it", file=sys.stderr)
        return 1
    job = check_job(p, args)
    check_cluster(p, args, job)
    note_ignored_options(p, args, job)
    from base.threads import set_frame_threads

    if args.threads is not None and not 1 <= args.threads <= 1024:
        p.error(f"--threads must be 1-1024 (got {args.threads})")
    set_frame_threads(args.threads)  # for this run only (main() can run more than once in a process)

    # Ctrl-C (or `kill`) is one line from here on, also while the frameworks are still importing
    # (seconds at start-up): the handler only records the signal and raises KeyboardInterrupt.
    from base import publish

    publish.signals_received.clear()  # main() can run more than once in a process (tests, scripts)
    publish.run_finished.clear()

    def interrupted(signum, frame):  # clean up temporary files, publish nothing
        if signum == signal.SIGINT and publish.run_finished:
            return  # all published, the last line printed: a late Ctrl-C changes nothing
        publish.note_signal(signum)
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupted) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        from base.errors import OptionError, TezipError, printable

        plan = None
        if job == "compress":
            try:
                plan = codec_plan(args)
            except OptionError as e:
                p.error(str(e))
            except TezipError as e:
                print(f"tezip.py: error: {printable(e)}", file=sys.stderr)
                return e.exit_code
            note_block_0(p, args)
        if job == "learn":
            for flag, value, low in (("--nt", args.nt, 2), ("--epochs", args.epochs, 0 if args.skip else 1),
                                     ("--steps", args.steps, 1),
                                     ("--batch", args.batch, 1), ("--val-sequences", args.val_sequences, 1)):
                if value < low:
                    p.error(f"{flag} must be at least {low} (got {value})")
            if args.crop is not None and min(args.crop) < 1:
                p.error(f"--crop H W must be positive (got {args.crop[0]} {args.crop[1]})")
            if len(args.stack) > MAX_HIDDEN_LAYERS or not all(1 <= c <= MAX_CHANNELS for c in args.stack):
                p.error(f"--stack takes 1 to {MAX_HIDDEN_LAYERS} channel counts, each 1-{MAX_CHANNELS} "
                        f"(got {' '.join(map(str, args.stack))})")
            auto = args.skip == "auto"
            if not auto and (args.skip < 0 or args.skip > MAX_SKIP or (args.skip and args.skip % 2 == 0)):
                p.error(f"--skip must be 0, auto or an odd filter size up to {MAX_SKIP} (got {args.skip})")
            from prednet.skipfit import MAX_SKIP_FRAMES

            if auto and args.skip_frames != 2:
                p.error("--skip-frames is chosen by --skip auto; give --skip K to set it")
            if not 2 <= args.skip_frames <= MAX_SKIP_FRAMES:
                p.error(f"--skip-frames must be 2 to {MAX_SKIP_FRAMES} (got {args.skip_frames})")
            if args.skip_frames != 2 and not args.skip:
                p.error("--skip-frames needs --skip K (the linear filter it sizes)")
            if args.skip and not auto and args.skip_frames > args.nt - 1:
                # the loss counts from step N: a filter over more frames than a sequence has before its
                # last step never sees a full history (--skip auto leaves such sizes out)
                p.error(f"--skip-frames {args.skip_frames} needs sequences of more frames than that: --nt must be at "
                        f"least {args.skip_frames + 1} (got {args.nt})")
            if args.frame_input and not args.skip:
                p.error("--frame-input needs --skip K (it shows PredNet the linear filter's input)")
            if args.train_skip and not args.skip:
                p.error("--train-skip needs --skip K (the linear filter whose taps it trains)")
            for flag, given in (("--frame-input", args.frame_input), ("--train-skip", args.train_skip)):
                if given and args.epochs == 0:
                    p.error(f"{flag} changes what the epochs train, and --epochs 0 trains nothing (the fitted "
                            "filter alone): give epochs or leave it out")
            if not (math.isfinite(args.lr) and 0 < args.lr <= 1):
                p.error(f"--lr must be a learning rate in (0, 1] (got {args.lr:g})")

        from prednet.device import select_device

        try:
            device = select_device(args.force, framework=job == "learn")
        except Exception:
            if publish.signals_received:  # the interrupt surfaced inside an import as the library's own
                raise KeyboardInterrupt from None  # error (keras: "you need optree"): it is still Ctrl-C
            raise
        if publish.signals_received:  # a KeyboardInterrupt raised inside a library's import can be swallowed there
            raise KeyboardInterrupt
        print(f"{device} MODE", flush=True)
        return _run(job, args, plan, device)
    except Exception:
        if not publish.signals_received:
            raise
        # Ctrl-C inside compiled code that calls back into Python (numba's least-squares fit of
        # -l --skip) comes back as the library's own error (SystemError: "returned a result with
        # an exception set"): it is still Ctrl-C, and the output folder was cleaned up on the way
        print(INTERRUPTED, file=sys.stderr)
        return 128 + publish.signals_received[0]
    except KeyboardInterrupt as e:
        # training keeps the best model it has written so far (prednet.train.TrainingInterrupted)
        if hasattr(e, "message"):
            from base.errors import printable

            print(f"tezip.py: {printable(e.message)}", file=sys.stderr)
        else:
            print(INTERRUPTED, file=sys.stderr)
        return 128 + (publish.signals_received[0] if publish.signals_received else signal.SIGINT)
    finally:
        set_frame_threads(None)
        for sig, handler in previous.items():
            if handler is not None:
                signal.signal(sig, handler)


def _run(job, args, plan, device):
    from base.errors import TezipError, printable

    try:
        failed = 0
        if job == "learn":
            run_learn(args)
        elif job == "compress":
            failed = run_compress(args, plan, run_flags(args, device))
        else:
            failed = run_uncompress(args, run_flags(args, device))
        if failed:
            return 1
    except TezipError as e:  # one line, whatever the message holds (names are escaped)
        print(f"tezip.py: error: {printable(e)}", file=sys.stderr)
        return e.exit_code
    except MemoryError:
        print("tezip.py: error: not enough memory", file=sys.stderr)
        return 1
    except OSError as e:  # an I/O failure no check foresaw (disk error, file vanished)
        where = f": {printable(e.filename)}" if getattr(e, "filename", None) else ""
        print(f"tezip.py: error: {e.strerror or e}{where}", file=sys.stderr)
        return 1
    return 0


def console_main():
    """The command's entry point (`python tezip.py` and the installed `tezip`): main(), then exit
    with its code."""
    code = main()
    # The run is over and its last line printed: a late Ctrl-C (pressed twice, or just as the run
    # finished) must not interrupt the frameworks' exit handlers (a traceback after the line) or
    # turn a finished run's status into 130.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if code in (128 + signal.SIGINT, 128 + signal.SIGTERM):
        # Interrupted: what the frameworks' exit handlers still have to say about the work they
        # were stopped in (Dask's clusters closed mid start-up: dozens of traceback lines) is not
        # the user's business; the handlers still run (they stop the worker processes).
        sys.stderr.flush()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        sys.stderr = open(os.devnull, "w")
    sys.exit(code)


if __name__ == "__main__":
    console_main()
