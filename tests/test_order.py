"""--order auto (compress/order.py): codes sample windows in both orders, keeps the smaller, and
the archive is the very archive the chosen order makes when given; decoded exactly / within the
bound. Real frames through tezip.main."""

import filecmp

import numpy as np
import pytest
import tifffile

import archive
import tezip
from compress.order import sample_windows
from conftest import make_sequence
from frames.read import read_sequence
from test_hierarchical import blob_field


def same_archive(one, other):
    return all(filecmp.cmp(one / name, other / name, shallow=False) for name in archive.ARCHIVE_FILES)


@pytest.mark.parametrize("segments, window, picks", [
    ([(0, 10)], 10, [0]),
    ([(0, 10), (10, 20)], 10, [0, 1]),
    ([(0, 10), (10, 20), (20, 23)], 10, [0, 1]),  # the short last window is left out
    ([(0, 10), (10, 20), (20, 26)], 10, [0, 1, 2]),  # at least half a window: kept
    ([(s, s + 10) for s in range(0, 100, 10)], 10, [0, 4, 9]),  # first, middle, last
    ([(0, 1), (1, 2), (2, 12), (12, 22), (22, 32)], 10, [2, 3, 4]),  # warm-up keyframes (-p 2) left out
    ([(0, 1), (1, 3)], 10, [0, 1]),  # nothing half a window long: what there is
])
def test_sample_windows_first_middle_last(segments, window, picks):
    assert sample_windows(segments, window) == picks


def compress_both(source, tmp_path, options, capsys, model="none"):
    """Compress `source` with --order auto (-v) and with each fixed order; returns (the order auto
    chose, as printed, the out folders by order, the printed line)."""
    outs = {}
    for order in ("auto", "sequential", "hierarchical"):
        outs[order] = tmp_path / order
        assert tezip.main(["-c", model, str(source), str(outs[order]), "--order", order, "-v", *options]) == 0
        if order == "auto":
            line = next(li for li in capsys.readouterr().out.splitlines() if "order auto:" in li)
    return line.split("order auto: ")[1].split()[0], outs, line


@pytest.mark.parametrize("bound", ["0", "4"])
def test_auto_takes_the_hierarchical_order_on_a_smooth_field(tmp_path, capsys, bound):
    field = blob_field(n_frames=24)[:, 0]  # (T, H, W) uint16, a drifting blob with read noise
    tifffile.imwrite(tmp_path / "run.tif", field, photometric="minisblack")
    chosen, outs, line = compress_both(tmp_path / "run.tif", tmp_path, ["-w", "8", "-m", "abs", "-b", bound], capsys)
    assert chosen == "hierarchical", line
    assert same_archive(outs["auto"], outs["hierarchical"])
    sizes = {o: archive.archive_size(outs[o]) for o in ("sequential", "hierarchical")}
    assert sizes["hierarchical"] < sizes["sequential"], sizes  # the choice was right over the whole run
    assert tezip.main(["-u", "none", str(outs["auto"]), str(tmp_path / "back")]) == 0
    back = tifffile.imread(next((tmp_path / "back").glob("*.tif")))
    assert np.abs(back.astype(np.int64) - field).max() <= int(bound)


@pytest.mark.parametrize("model", ["none", "default"])
def test_auto_takes_the_sequential_order_on_moving_edges(tmp_path, capsys, model):
    """Moving squares: sequential. The run is coded window by window, the trial's windows reused
    (with the model: its lanes, trial and the windows it stopped in), into the very archive
    `--order sequential` makes."""
    frames = make_sequence(tmp_path / "squares", n_frames=40, height=32, width=48, seed=3)  # hard edges, moving
    chosen, outs, line = compress_both(tmp_path / "squares", tmp_path, ["-w", "6", "-m", "abs", "-b", "0"], capsys,
                                       model)
    assert chosen == "sequential", line
    assert line.split("frames ")[1].count("-") == 3  # three windows sampled (of six): three coded after the trial
    assert same_archive(outs["auto"], outs["sequential"])
    sizes = {o: archive.archive_size(outs[o]) for o in ("sequential", "hierarchical")}
    assert sizes["sequential"] < sizes["hierarchical"], sizes
    assert tezip.main(["-u", model, str(outs["auto"]), str(tmp_path / "back")]) == 0
    np.testing.assert_array_equal(read_sequence(tmp_path / "back").frames, frames)


@pytest.mark.parametrize("options", [["-t", "0.001", "-m", "abs", "-b", "0"],  # dynamic windows
                                     ["-w", "8", "-m", "rel", "-b", "0.01"]])  # not the abs mode
def test_auto_is_sequential_where_the_hierarchical_order_cannot_serve(tmp_path, capsys, options):
    field = blob_field(n_frames=12)[:, 0]
    tifffile.imwrite(tmp_path / "run.tif", field, photometric="minisblack")
    for order in ("auto", "sequential"):
        assert tezip.main(["-c", "none", str(tmp_path / "run.tif"), str(tmp_path / order), "--order", order, "-v",
                           *options]) == 0
    assert "order auto" not in capsys.readouterr().out  # no trial
    assert same_archive(tmp_path / "auto", tmp_path / "sequential")


def test_the_trial_windows_of_the_chosen_order_are_not_coded_again(tmp_path, monkeypatch):
    """Six windows: three sampled in each order, then only the chosen order's other three coded."""
    import compress.segments as segments

    make_sequence(tmp_path / "squares", n_frames=40, height=32, width=48, seed=3)
    coded = []
    real = segments.encode_segment

    def counting(model, source, plan, part, *args, **kw):
        coded.append((plan.order, part.segments[0]))
        return real(model, source, plan, part, *args, **kw)

    monkeypatch.setattr(segments, "encode_segment", counting)
    assert tezip.main(["-c", "none", str(tmp_path / "squares"), str(tmp_path / "out"), "--order", "auto",
                       "-w", "6", "-b", "0"]) == 0
    orders = [o for o, _ in coded]
    assert orders.count("hierarchical") == 3 and orders.count("sequential") == 6, coded
    assert len({w for o, w in coded if o == "sequential"}) == 6  # every window once
