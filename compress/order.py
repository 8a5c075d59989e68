"""--order auto: the coding order chosen per sequence by coding sample windows both ways.

Neither order wins everywhere. The hierarchical order (sequence/hierarchical.py: each window in
bidirectional B-frame order, fitted interpolation, no model) is 10-30 % smaller losslessly and
several times smaller under a bound on smooth simulated fields and detector runs; on camera
footage with cuts and fast motion the sequential order (the model, the previous frame moved) is
smaller, and where it is depends on the content: on the dev footage at abs 4 the first window
favours the hierarchical order by 4 % and the second the sequential by 13 %. So `auto` codes up
to SAMPLE_WINDOWS windows spread over the sequence (the first, the middle and the last whole one)
in each order, keeps the order with fewer bytes a frame over them, and codes the sequence with
it. Only the abs mode with fixed windows (-w) has a hierarchical order; anything else is
sequential without a trial. The archive records the order used, as if it had been given.
"""

from dataclasses import dataclass, field, replace

SAMPLE_WINDOWS = 3


@dataclass(frozen=True)
class OrderTrial:
    """What the trial measured: per order, the windows it coded [(start, end)] and their bytes a
    frame (chunks only: the headers are the same size either way); and, of the order chosen, its
    SegmentPlan of one window a segment (`cuts`) and the SegmentCodes the trial made ({segment
    index: code}), which coding the run reuses: a window coded alone gives the very chunks the
    whole run gives it (compress/segments.py)."""

    windows: dict
    bytes_per_frame: dict
    cuts: object = None
    codes: dict = field(default_factory=dict)

    def line(self, chosen):
        other = "sequential" if chosen == "hierarchical" else "hierarchical"
        frames = ", ".join(f"{s}-{e - 1}" for s, e in self.windows[chosen])
        return (f"order auto: {chosen} ({self.bytes_per_frame[chosen]:,.0f} bytes a frame on frames {frames}; "
                f"{other} {self.bytes_per_frame[other]:,.0f})")


def sample_windows(segments, window):
    """Indices into `segments` [(start, end)] (one window each) of the first, the middle and the
    last window at least half of `window` long (warm-up keyframes -p and a short last window say
    nothing of the run; all of them where none is that long); at most SAMPLE_WINDOWS, in order,
    no repeats."""
    whole = [i for i, (s, e) in enumerate(segments) if 2 * (e - s) >= window] or list(range(len(segments)))
    picks = sorted({whole[0], whole[(len(whole) - 1) // 2], whole[-1]})
    return picks[:SAMPLE_WINDOWS]


def choose_order(model, source, plan, device="CPU", report_frame=None):
    """Resolve CodecPlan `plan`'s order "auto" for `source` (frames.source.FrameSource).

    model: (ReferenceWeights, doc) or None, what the sequential order would use. report_frame: as
    compression's (the trial's codes are reused). Returns (plan with order "sequential" or
    "hierarchical", the model to code with (None for hierarchical), the OrderTrial or None where no
    trial ran). Plans with another order come back unchanged. Raises TezipError as compression
    does (the trial codes real frames)."""
    from compress.segments import SegmentPlan, encode_segment

    if plan.order != "auto":
        return plan, model, None
    sequential = replace(plan, order="sequential")
    if plan.window is None or plan.mode != "abs":
        return sequential, model, None
    hierarchical = replace(plan, order="hierarchical")
    windows, rates, made = {}, {}, {}
    for candidate, candidate_model in ((sequential, model), (hierarchical, None)):
        cuts = SegmentPlan.of(candidate_model, source, candidate, 1)  # one window a segment
        picks = sample_windows(cuts.segments, plan.window)
        codes = {i: encode_segment(candidate_model, source, candidate, cuts.part(i), device, report_frame, threads=None)
                 for i in picks}
        windows[candidate.order] = [cuts.segments[i] for i in picks]
        rates[candidate.order] = (sum(len(c) for code in codes.values() for c in code.chunks)
                                  / sum(code.end - code.start for code in codes.values()))
        made[candidate.order] = (cuts, codes)
    chosen, chosen_model = (hierarchical, None) if rates["hierarchical"] < rates["sequential"] else (sequential, model)
    return chosen, chosen_model, OrderTrial(windows, rates, *made[chosen.order])
