"""What each job of a workflow run cost: the ``usage:`` line ``diffact`` writes last into every job's log.

``diffact usage-report --logs results/rehearsal/logs`` sums them per log folder (``logs/<part>/...``, one
folder per kind of rule: extract, correspondence, properties, scarce, segmentation, figures, ...) into jobs,
summed wall time and the largest peak RSS, the rehearsal's "wall time per stage" table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

USAGE_LINE = re.compile(r"usage: command=(?P<command>\S+) wall_s=(?P<wall>[0-9.]+) peak_rss_mb=(?P<rss>[0-9.]+) "
                        r"children_peak_rss_mb=(?P<child>[0-9.]+) exit=(?P<exit>-?\d+)")


@dataclass(frozen=True)
class JobUsage:
    log: str          # path relative to the logs folder
    part: str         # first folder under logs/ (the kind of rule)
    command: str
    wall_s: float
    peak_rss_mb: float  # the larger of the process and its reaped children
    exit: int


def read_usage(logs: str | Path) -> list[JobUsage]:
    """The last usage line of every job log in a sub-folder of ``logs`` (a log without one: the job never
    finished). Files directly in ``logs`` are whole-run logs (snakemake's own output) and are skipped."""
    logs = Path(logs)
    rows = []
    for path in sorted(logs.rglob("*.log")):
        rel = path.relative_to(logs)
        found = USAGE_LINE.findall(path.read_text(errors="replace")) if len(rel.parts) > 1 else []
        if not found:
            continue
        command, wall, rss, child, code = found[-1]
        rows.append(JobUsage(str(rel), rel.parts[0], command, float(wall),
                             max(float(rss), float(child)), int(code)))
    return rows


def summarize(rows: list[JobUsage]) -> list[dict]:
    """Per part: jobs, summed wall seconds, largest peak RSS (MB) and the log of that largest job; then a total."""
    parts: dict[str, list[JobUsage]] = {}
    for row in rows:
        parts.setdefault(row.part, []).append(row)
    table = []
    for part, jobs in sorted(parts.items()):
        biggest = max(jobs, key=lambda j: j.peak_rss_mb)
        table.append({"part": part, "jobs": len(jobs), "wall_s": round(sum(j.wall_s for j in jobs), 1),
                      "max_wall_s": round(max(j.wall_s for j in jobs), 1), "peak_rss_mb": round(biggest.peak_rss_mb),
                      "largest_job": biggest.log, "failed": sum(j.exit != 0 for j in jobs)})
    if rows:
        biggest = max(rows, key=lambda j: j.peak_rss_mb)
        table.append({"part": "total", "jobs": len(rows), "wall_s": round(sum(j.wall_s for j in rows), 1),
                      "max_wall_s": round(max(j.wall_s for j in rows), 1), "peak_rss_mb": round(biggest.peak_rss_mb),
                      "largest_job": biggest.log, "failed": sum(j.exit != 0 for j in rows)})
    return table


def markdown(table: list[dict]) -> str:
    head = "| part | jobs | wall s (sum) | longest job s | peak RSS MB | largest job | failed |\n|---|---|---|---|---|---|---|\n"
    return head + "".join(f"| {r['part']} | {r['jobs']} | {r['wall_s']} | {r['max_wall_s']} | {r['peak_rss_mb']} | "
                          f"`{r['largest_job']}` | {r['failed']} |\n" for r in table)
