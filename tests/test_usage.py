"""Every `diffact` job ends its log with a usage line (wall time, peak RSS); `diffact usage-report` sums them per
log folder, the rehearsal's wall time per stage."""

from diffact.cli import main
from diffact.usage import read_usage, summarize


def test_usage_lines_are_written_and_summed_per_folder(tmp_path, capsys):
    logs = tmp_path / "logs"
    assert main(["--log", str(logs / "extract" / "a.log"), "make-standin-models", "--cache", str(tmp_path / "c"),
                 "--models", "sd99"]) == 2  # a failing job still reports its usage
    assert main(["--log", str(logs / "figures" / "b.log"), "usage-report", "--logs", str(tmp_path)]) == 0
    (logs / "figures" / "unfinished.log").write_text("no usage line: the job was killed\n")
    (logs / "snakemake.log").write_text((logs / "extract" / "a.log").read_text())  # a whole-run log: skipped
    rows = read_usage(logs)
    assert [(r.part, r.command, r.exit) for r in rows] == [("extract", "make-standin-models", 2),
                                                          ("figures", "usage-report", 0)]
    assert all(r.wall_s >= 0 and r.peak_rss_mb > 10 for r in rows)
    table = summarize(rows)
    assert [t["part"] for t in table] == ["extract", "figures", "total"]
    assert table[-1]["jobs"] == 2 and table[-1]["failed"] == 1
    capsys.readouterr()
    assert main(["usage-report", "--logs", str(logs)]) == 0
    printed = capsys.readouterr().out
    assert "| extract | 1 |" in printed and "| total | 2 |" in printed
    assert main(["usage-report", "--logs", str(tmp_path / "nope")]) == 2
