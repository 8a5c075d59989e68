"""--report: the report's title states the same compression ratio as the summary line."""

import compress.report
from archive import archive_size
from compress.pipeline import compress_folder
from conftest import make_sequence, plan_and_flags


def test_report_title_ratio_is_the_archives(tmp_path, monkeypatch):
    make_sequence(tmp_path / "in", n_frames=4, height=16, width=24)
    drawn = []
    render = compress.report.render_report

    def spy(names, summary, *args, **kwargs):
        drawn.append((summary.compressed_bytes, summary.ratio))
        return render(names, summary, *args, **kwargs)

    monkeypatch.setattr(compress.report, "render_report", spy)
    summary = compress_folder("none", tmp_path / "in", tmp_path / "comp", *plan_and_flags(window=3, report=True))
    size = archive_size(tmp_path / "comp")
    assert drawn == [(size, summary.ratio)]
    assert summary.compressed_bytes == size and summary.ratio < 100


def test_hierarchical_order_reports_no_prediction_it_did_not_keep(tmp_path, capsys):
    """The hierarchical order keeps no prediction: -v says so for its predicted frames instead of
    showing the decoded frame's error as a prediction MSE, and --report still draws (the worst
    predicted frame is unknown, so the first frame is shown)."""
    import tezip

    make_sequence(tmp_path / "in", n_frames=6, height=16, width=24, channels=1, seed=2, noise=2)
    assert tezip.main(["-c", "none", str(tmp_path / "in"), str(tmp_path / "comp"), "-w", "6", "-b", "2",
                       "--order", "hierarchical", "-v", "--report"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  frame ") and ": " in line
             and not line.startswith("  frame order")]
    assert "keyframe" in lines[0] and len(lines) == 6
    assert all("prediction MSE n/a (not kept in the hierarchical order)" in line for line in lines[1:])
    assert (tmp_path / "comp" / "report.png").stat().st_size > 0
