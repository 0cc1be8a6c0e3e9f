"""CLI: ``diffact figures-index`` writes paper_figures/<profile>/README.md (the index of the paper's 24 items)."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("figures-index", help="write the index of regenerated paper figures and tables")
    p.add_argument("--figures", default="paper_figures/demo", help="folder of regenerated figures and tables")
    p.add_argument("--provenance", default="results/notebooks", help="folder of the notebooks' provenance files")
    p.add_argument("--profile", default="demo", help="the active profile's name (shown in the index)")
    p.add_argument("--out", default=None, help="index file (default: <figures>/README.md)")
    p.set_defaults(func=cmd_figures_index)


def cmd_figures_index(args) -> int:
    from pathlib import Path

    from diffact.utils.errors import ConfigError
    from diffact.viz.index import write_index

    if not Path(args.figures).is_dir():
        raise ConfigError(f"--figures {args.figures}: no such folder")
    write_index(args.out or Path(args.figures) / "README.md", args.figures, args.provenance, args.profile)
    return 0
