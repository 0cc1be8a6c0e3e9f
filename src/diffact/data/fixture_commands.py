"""``diffact make-paper-fixtures``: fixture datasets at the real sizes and in the real layouts, for a rehearsal of
the paper profile (see :mod:`diffact.data.paper_fixtures` and docs/datasets.md)."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def register(subparsers) -> None:
    from diffact.data.paper_fixtures import DATASETS, FOLDERS, SPAIR_DEFAULT_CATEGORIES, SPAIR_SOURCES, FixtureCounts

    defaults = FixtureCounts()
    keys = ", ".join(f"{key}={getattr(defaults, key.replace('-', '_'))}" for key in FixtureCounts.keys())
    p = subparsers.add_parser(
        "make-paper-fixtures",
        help="write fixture datasets in the real layouts and at the real image sizes (for a paper-profile rehearsal)",
        description=(
            "Write SPair-71k, DDPM-seg Horse-21 / Bedroom-28, ADE20K and Cityscapes trees under DIR, in their "
            f"releases' layouts and image sizes ({', '.join(f'DIR/{f}' for f in FOLDERS.values())}), so that "
            "`--out data` gives the roots config/paper.yaml names. Pictures are scikit-image's shipped images, "
            "warped or tiled; labels are synthetic (SPair keypoints are exact by construction). The same arguments "
            "give byte-identical files."
        ),
    )
    p.add_argument("--out", required=True, metavar="DIR", help="parent of the dataset folders (e.g. data)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    p.add_argument("--datasets", type=_names, default=list(DATASETS), metavar="A,B",
                   help=f"which fixtures to write (default all: {','.join(DATASETS)})")
    p.add_argument("--counts", default="", metavar="KEY=N,...",
                   help=f"sizes (spair-<split>: images per category; spair-<split>-360: pairs per category in DHF's "
                        f"subset file); defaults: {keys}")
    p.add_argument("--ddpmseg-train", type=int, metavar="N",
                   help=f"training images of Horse-21 and Bedroom-28 (same as --counts ddpmseg-train=N; the paper: 30 "
                        f"and 40; default {defaults.ddpmseg_train})")
    p.add_argument("--ddpmseg-test", type=int, metavar="N",
                   help=f"test images of Horse-21 and Bedroom-28 (the paper: 20; default {defaults.ddpmseg_test})")
    p.add_argument("--spair-categories", type=_names, default=list(SPAIR_DEFAULT_CATEGORIES), metavar="A,B",
                   help=f"SPair categories, of {','.join(SPAIR_SOURCES)}: each is one shipped image "
                        f"(default {','.join(SPAIR_DEFAULT_CATEGORIES)})")
    p.add_argument("--train-ids", action=argparse.BooleanOptionalAction, default=True,
                   help="also write Cityscapes' *_gtFine_labelTrainIds.png, as `diffact cityscapes-train-ids` "
                        "does (default: yes)")
    p.add_argument("--force", action="store_true", help="replace dataset folders that exist and are not empty")
    p.set_defaults(func=make_paper_fixtures)


def make_paper_fixtures(args: argparse.Namespace) -> int:
    from diffact.data.paper_fixtures import build_paper_fixtures, parse_counts, tree_summary
    from diffact.utils.errors import ConfigError

    counts = parse_counts(args.counts)
    for option in ("ddpmseg_train", "ddpmseg_test"):
        value = getattr(args, option)
        if value is None:
            continue
        if option.replace("_", "-") + "=" in args.counts.replace(" ", ""):
            raise ConfigError(f"--{option.replace('_', '-')} and --counts {option.replace('_', '-')}=... both given")
        counts = counts.replace(**{option: value})
    written = build_paper_fixtures(args.out, seed=args.seed, counts=counts, datasets=args.datasets,
                                   spair_categories=args.spair_categories, train_ids=args.train_ids, force=args.force)
    for name, folder in written.items():
        files, size = tree_summary(folder)
        print(f"{name}: {folder} ({files} files, {size / 1e6:.1f} MB)")
    return 0
