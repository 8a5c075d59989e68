"""The codec plan: the compression options, validated once, and what follows from them — the
keyframe schedule, the block selector, and the stage chains for residuals and keyframes. It is
what an archive records; how a run behaves (overwrite, verbosity, device, report) is `RunFlags`.
"""

import math
from dataclasses import dataclass

import numpy as np

from base.errors import OptionError, TezipError
from sequence.bounds import is_lossless, validate_bounds
from sequence.windows import dwp_lane_starts, first_keyframes, swp_keyframes, swp_lane_starts

QUANTIZERS = ("auto", "linquant", "medquant", "runmerge")
LOOPS = ("closed", "open")
# sequential: each frame from the frames before it (the model, the previous frame moved);
# hierarchical: each window in bidirectional B-frame order with fitted interpolation, no model
# (sequence/hierarchical.py: smooth fields, the domain TEZip was proposed for); auto: the one of
# the two that codes the sequence's first windows smaller (compress/order.py).
ORDERS = ("sequential", "hierarchical", "auto")
MAX_LANES = 16
# Budget for the model's recurrent state and activations when choosing how many lanes to batch:
# it bounds a run's memory whatever its length (384 x 288 frames: ~104 MiB a lane, 4 lanes). More
# lanes buy little on a CPU (the reference kernel already splits each step over channels and
# pixels: 1, 4 and 16 lanes ran within noise of each other per lane-step on the bundled model).
LANE_MEMORY_BUDGET = 512 << 20
MAX_BLOCK = 4096
MAX_GLOBAL_RANGE = 4096  # sequence.blockselect's
# Lossless keyframes and intra frames may also be stored as their pixels (byte-shuffled zstd): level 1,
# as small as level 19 on what no predictor helps (uniform 16-bit noise, 256x256: 131092 bytes both)
# in 0.1 ms instead of 17 ms.
STORED_LEVEL = 1


@dataclass(frozen=True)
class RunFlags:
    """How a run behaves; nothing here changes an archive's bytes."""

    overwrite: bool = False
    verbose: bool = False
    device: str = "CPU"
    report: bool = False  # also write report.png beside the archive
    report_frame: int | None = None  # the frame its heat map shows; default the worst-predicted one


@dataclass(frozen=True)
class CodecPlan:
    """Validated compression options (`CodecPlan.make` raises OptionError naming the option).

    warmup, window | threshold: the keyframe schedule (-p, -w | -t); mode, bounds: the error bound;
    loop: closed or open prediction; block, motion: the per-block predictor choice; quantizer: the
    lossy residual quantizer ("auto" resolved); entropy: the context range coder (else zigzag +
    zstd); lanes: the model's batch (None: chosen from the sequence); zstd_level."""

    warmup: int = 0
    window: int | None = None
    threshold: float | None = None
    mode: str = "abs"
    bounds: tuple = (0.0,)
    loop: str = "closed"
    block: int = 16
    motion: int = 4
    quantizer: str = "auto"
    entropy: bool = True
    lanes: int | None = None
    zstd_level: int | None = None
    mean: bool = True  # blocks may also take the mean of the model's prediction and the previous frame moved
    order: str = "sequential"
    intra: bool = True  # a predicted frame may be coded on its own pixels when that is smaller
    colour: bool = True  # lossless RGB: a reversible colour transform before MED (keyframes, residuals)
    global_range: int = 128  # blocks also search around one global displacement of up to this many pixels

    @classmethod
    def make(cls, **options):
        plan = cls(**options)
        plan._check()
        bounds = validate_bounds(plan.mode, plan.bounds)
        return cls(**{**options, "bounds": bounds})

    def _check(self):
        if (self.window is None) == (self.threshold is None):
            raise OptionError("-c needs exactly one of -w WINDOW (static windows) or -t MSE (dynamic windows)")
        if self.window is not None and (not _is_int(self.window) or self.window < 1):
            raise OptionError(f"-w must be at least 1 (got {self.window})")
        if self.threshold is not None and not (0 < self.threshold < math.inf):
            raise OptionError(f"-t must be a positive finite number (got {self.threshold})")
        if not _is_int(self.warmup) or self.warmup < 0:
            raise OptionError(f"-p must be 0 or more (got {self.warmup})")
        if self.lanes is not None and (not _is_int(self.lanes) or self.lanes < 1):
            raise OptionError(f"--lanes must be at least 1 (got {self.lanes})")
        if self.zstd_level is not None and (not _is_int(self.zstd_level) or not 1 <= self.zstd_level <= 22):
            raise OptionError(f"--zstd-level must be 1-22 (got {self.zstd_level})")
        if not _is_int(self.block) or not 0 <= self.block <= MAX_BLOCK:
            raise OptionError(f"--block must be 0 (off) or a block size up to {MAX_BLOCK} (got {self.block})")
        if not _is_int(self.global_range) or not 0 <= self.global_range <= MAX_GLOBAL_RANGE:
            raise OptionError(f"--global-motion must be 0 (off) to {MAX_GLOBAL_RANGE} pixels (got {self.global_range})")
        if not _is_int(self.motion) or not 0 <= self.motion <= 7:
            raise OptionError(f"--motion must be a search radius 0-7 (got {self.motion})")
        if self.quantizer not in QUANTIZERS:
            raise OptionError(f"--quantizer must be one of {', '.join(QUANTIZERS)} (got {self.quantizer!r})")
        if self.quantizer in ("linquant", "medquant") and self.mode != "abs":
            raise OptionError(f"--quantizer {self.quantizer} serves the abs mode only (got -m {self.mode})")
        if self.loop not in LOOPS:
            raise OptionError(f"--loop must be closed or open (got {self.loop!r})")
        if self.order not in ORDERS:
            raise OptionError(f"--order must be one of {', '.join(ORDERS)} (got {self.order!r})")
        if self.order == "hierarchical":
            if self.window is None:
                raise OptionError("--order hierarchical codes fixed windows: give -w WINDOW, not -t")
            if self.mode != "abs":
                raise OptionError(f"--order hierarchical serves the abs mode only (got -m {self.mode})")

    # -- what follows from the options -----------------------------------------------------------
    @property
    def lossless(self):
        return is_lossless(self.mode, self.bounds)

    @property
    def level(self):
        from stages.zstd import DEFAULT_LEVEL

        return DEFAULT_LEVEL if self.zstd_level is None else self.zstd_level

    def abs_tolerance(self, max_value):
        """The one integer tolerance of a lossy abs bound (linquant, medquant), else None."""
        quantizer = "linquant" if self.quantizer == "auto" and self.mode == "abs" else self.quantizer
        if quantizer not in ("linquant", "medquant") or self.lossless:
            return None
        return min(int(math.floor(self.bounds[0])), max_value)

    def residual_head(self, max_value):
        """The residual quantizer: linquant (the default under a lossy abs bound: plain bins, the
        context coder models the rest), medquant when asked, else runmerge (rel, absrel and pwrel
        tolerances vary per plane or pixel; lossless is runmerge at tolerance 0)."""
        from stages.linquant import LinearQuantizer
        from stages.medquant import MedQuantizer
        from stages.runmerge import RunMerge

        tolerance = self.abs_tolerance(max_value)
        if tolerance is None:
            return RunMerge()
        return MedQuantizer(tolerance) if self.quantizer == "medquant" else LinearQuantizer(tolerance)

    def keyframe_head(self, max_value):
        """The keyframes' head where they have one (keyframe_coder): MED (LOCO-I), exact (lossless
        with -n); or, under a lossy abs bound, medquant, the same prediction from the reconstructed
        pixels with the errors quantized within the bound (a quarter of the lossless size at abs 8)."""
        from stages.med import MedCoder
        from stages.medquant import MedQuantizer

        tolerance = self.abs_tolerance(max_value)
        return MedCoder() if tolerance is None else MedQuantizer(tolerance)

    def colour_transform(self, channels):
        """The reversible colour transform (stages/rct.py) for lossless RGB(A) frames, else None:
        exact, so only where the pixels are (under a lossy bound the bound holds per RGB pixel; on
        linquant's and medquant's codes it made the dev frames larger)."""
        from stages.rct import ColourTransform

        return ColourTransform() if self.colour and self.lossless and channels >= 3 else None

    def spatial_stages(self, head, channels=1):
        """After runmerge: MED for lossless residuals (noise-like: MED leaves the fewest bits), after
        the colour transform for RGB; the row delta for lossy ones (merged runs along rows become
        zeros, which MED would not make). Nothing after linquant or medquant."""
        from stages.delta1d import DeltaCoder
        from stages.med import MedCoder

        if head.codec_id != "runmerge":
            return []
        if not self.lossless:
            return [DeltaCoder()]
        colour = self.colour_transform(channels)
        return ([colour] if colour is not None else []) + [MedCoder()]

    def back_ends(self, wide):
        """The candidate byte-coding tails, the smaller of which is kept: the context range coder,
        or with -n zigzag + byte-shuffled zstd. wide: frames wider than 8 bits. (Wide frames also
        tried zigzag + zstd beside the context coder until it never won: 0 of 819 residual frames
        and none of the keyframes on the seven 16-bit sets of bench_16bit and Poisson detector
        frames, at 1.3-2.8x the context coder's time. Archives that hold both still decode: the
        tails are recorded.)"""
        from stages.ctxrange import ContextRangeCoder
        from stages.zigzag import ZigZagCoder
        from stages.zstd import ZstdCodec

        if self.entropy:
            return [[ContextRangeCoder()]]
        return [[ZigZagCoder(), ZstdCodec(level=self.level, shuffle=True)]]

    def block_selector(self, model=True, extrapolate=False):
        """Per block: the model's prediction or the previous decoded frame moved (model=False: the
        previous frame moved, always; a run without a model needs blocks); with `extrapolate`,
        linear extrapolation from the two previous decoded frames where no model predicts."""
        from sequence.blockselect import BlockSelector

        if not model and not self.block:
            raise OptionError("--block 0 predicts every pixel with the model: without a model (MODEL_DIR none) "
                              "give a block size (default 16)")
        if not self.block:
            return None
        code0 = model or extrapolate
        return BlockSelector(self.block, self.motion, code0, mean=code0 and self.mean, global_range=self.global_range,
                             extrapolate=extrapolate)

    def extrapolates(self, max_value):
        """Whether frames no model predicts (a run without one, windows where the model's trial
        stopped it) may take linear extrapolation per block: always, except 8-bit frames
        losslessly, where it never won on the dev footage (its blocks win the sum of absolute
        residuals but the chunk coded without them comes out smaller, and trying both costs time)."""
        return not (self.lossless and max_value <= 255)

    def frame_coder(self, max_value, wide, model=True, xp=np, channels=1):
        """The predicted frames' coder (sequence/framecoder.py). wide: frames wider than 8 bits;
        with `intra`, the keyframe coder codes a predicted frame on its own when that is smaller."""
        from sequence.framecoder import FrameCoder
        from stages.chain import Alternatives, Chain

        head = self.residual_head(max_value)
        tails = Alternatives([Chain(tail) for tail in self.back_ends(wide)])
        intra = self.keyframe_coder(max_value, wide, channels) if self.intra else None
        selector = self.block_selector(model, self.extrapolates(max_value))
        if selector is not None:
            selector.colour_cost = self.colour_transform(channels) is not None
        return FrameCoder(head, self.spatial_stages(head, channels), tails, selector, self.mode,
                          self.bounds, max_value, xp, intra)

    def window_coder(self, max_value, device="CPU"):
        """The hierarchical order's window coder (sequence/hierarchical.py), within the abs bound."""
        from sequence.hierarchical import HierarchicalCoder

        tolerance = 0 if self.lossless else min(int(math.floor(self.bounds[0])), max_value)
        return HierarchicalCoder(tolerance, max_value, device=device)

    def keyframe_coder(self, max_value, wide, channels=1):
        """Keyframes (and intra frames) on their own. Lossless with the context coder: no head, the
        (colour-transformed) pixels go to candidate chains that each predict for themselves, the
        smaller kept per frame: the weighted predictor with its expected error as the coding context
        (stages/wpred.py; 4.4 % fewer bytes than MED on the scene cuts) and MED before the usual
        tails (never worse than before: data with gaps between its values, such as 8-bit frames
        scaled to 16 bits, is MED's), and the pixels stored as they are (byte-shuffled zstd at
        level 1, STORED_LEVEL: what noise costs, so a frame no predictor helps grows by a few bytes
        only). Otherwise the head (keyframe_head) before the tails."""
        from sequence.framecoder import KeyframeCoder
        from stages.chain import Alternatives, Chain
        from stages.med import MedCoder
        from stages.wpred import WeightedPredictionCoder
        from stages.zstd import ZstdCodec

        colour = self.colour_transform(channels)
        if self.lossless and self.entropy:
            chains = ([[WeightedPredictionCoder()]] + [[MedCoder()] + tail for tail in self.back_ends(wide)]
                      + [[ZstdCodec(level=STORED_LEVEL, shuffle=True)]])
            return KeyframeCoder(None, max_value, Alternatives([Chain(c) for c in chains]), colour)
        return KeyframeCoder(self.keyframe_head(max_value), max_value,
                             Alternatives([Chain(tail) for tail in self.back_ends(wide)]), colour)

    def keyframe_schedule(self, n, lanes_for):
        """(is_key (N,) bool, lane starts). lanes_for(n_windows, dynamic) → the default lane count."""
        is_key = np.zeros(n, bool)
        if self.window is not None:
            keys = swp_keyframes(n, self.warmup, self.window)
            lane_starts = swp_lane_starts(keys, n, self.lanes or lanes_for(len(keys), False))
            is_key[keys] = True
        else:
            lane_starts = dwp_lane_starts(n, self.lanes or lanes_for(1, True))
            is_key[: first_keyframes(self.warmup)] = True
            is_key[lane_starts] = True
        return is_key, lane_starts

    def check_sequence(self, n, name):
        if n < 2:
            raise TezipError(f"{name} holds a single frame: TEZip compresses sequences of at least 2 frames")
        if self.warmup >= n:
            raise TezipError(f"-p {self.warmup} makes every one of the {n} frames a keyframe: nothing left to predict")


def default_lanes(weights, n_frames, height, width, n_windows, dynamic):
    """How many lanes the model advances at once: one per window, at most MAX_LANES, within the
    memory budget; under dynamic windows lanes of at least 32 frames. Without a model (weights
    None) one lane: frames are coded one after the other."""
    if weights is None:
        return 1
    from prednet.reference import reference_memory

    by_memory = max(1, LANE_MEMORY_BUDGET // max(1, reference_memory(weights, height, width, 1)))
    wanted = max(1, n_frames // 32) if dynamic else n_windows
    return int(max(1, min(MAX_LANES, wanted, by_memory)))


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
