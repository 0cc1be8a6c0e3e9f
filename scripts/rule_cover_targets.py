"""One output per rule of a workflow, cheapest model first: targets that make every rule run at least once.

    snakemake --summary --configfile config/rehearsal.yaml > summary.tsv
    python scripts/rule_cover_targets.py summary.tsv > targets.txt
    snakemake --configfile config/rehearsal.yaml --cores all $(cat targets.txt)

The rehearsal runs these first, so that a break in any rule shows up before the expensive full-size SDXL jobs.
"""

import sys

# Model names in output paths, cheapest first (SD1.5/SD2.1 at 512 px before the 1024 px SDXL-architecture ones).
COST = ("sd15", "sd21", "control", "sdxl", "pgv2", "xl-t", "combined")


def cost(path: str) -> int:
    parts = path.replace(".", "/").replace("_", "/").split("/")
    return min((COST.index(p) for p in parts if p in COST), default=len(COST))


def main(summary: str) -> None:
    best: dict[str, str] = {}
    with open(summary) as rows:
        next(rows)
        for row in rows:
            path, _, rule, *_ = row.rstrip("\n").split("\t")
            if rule not in best or cost(path) < cost(best[rule]):
                best[rule] = path
    for rule in sorted(best, key=lambda r: cost(best[r])):
        print(best[rule])


if __name__ == "__main__":
    main(sys.argv[1])
