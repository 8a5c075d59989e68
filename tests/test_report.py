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
