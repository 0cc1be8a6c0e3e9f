"""CLI of the datasets: the demo and fixture builders, and the checkers of dataset roots.

* ``diffact make-demo-spair``      — a demo correspondence dataset in SPair-71k's layout;
* ``diffact make-demo-seg``        — a demo label-scarce dataset (simple or complex) in the DDPM-seg layout;
* ``diffact make-demo-ade``        — the demo segmentation scenes in ADE20K's mmseg layout;
* ``diffact make-paper-fixtures``  — fixture datasets in the real layouts and at the real sizes (a rehearsal of
  the paper profile; see :mod:`diffact.data.paper_fixtures` and docs/datasets.md);
* ``diffact check-data``           — every dataset root and model reference of a profile, before a long run;
* ``diffact check-spair``          — the problems of an SPair-71k root;
* ``diffact seg-check``            — the problems of an ADE20K / Cityscapes root, one per line;
* ``diffact cityscapes-train-ids`` — Cityscapes' ``*_labelTrainIds.png`` from ``*_labelIds.png``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from diffact.utils.args import default_of

log = logging.getLogger(__name__)

# The semantic-segmentation dataset layouts (mmseg's); `seg-baseline` takes them too.
SEGMENTATION_LAYOUTS = ("ade20k", "cityscapes")


def _comma_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def register(subparsers) -> None:
    _register_make_demo_spair(subparsers)
    _register_make_demo_seg(subparsers)
    _register_make_demo_ade(subparsers)
    _register_make_paper_fixtures(subparsers)
    _register_check_data(subparsers)
    _register_check_spair(subparsers)
    _register_seg_check(subparsers)
    _register_cityscapes_train_ids(subparsers)


# ---------------------------------------------------------------------------------------------------
# Demo and fixture datasets


def _register_make_demo_spair(subparsers) -> None:
    make = subparsers.add_parser(
        "make-demo-spair",
        help="write a small demo correspondence dataset in SPair-71k's layout from shipped images",
        description=(
            "Write a demo SPair-71k tree (JPEGImages/, PairAnnotation/{trn,val,test}/, ImageAnnotation/, "
            "Layout/large/) whose targets are known warps of the sources, so the keypoints are exact. "
            "The same arguments give byte-identical files."
        ),
    )
    make.add_argument("--out", required=True, help="output folder (replaced atomically)")
    make.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    make.add_argument("--n-images", type=int, default=6, help="source images, spread over the categories (default 6)")
    make.add_argument("--pairs-per-image", type=int, default=4, help="warped targets per source; pair k goes to test/val/trn by k mod 3 (default 4)")
    make.add_argument("--image-size", type=int, default=96, help="long side of every image in pixels (default 96)")
    make.add_argument("--categories", type=_comma_list, default=None, help="comma-separated shipped image names (default astronaut,chelsea,coffee)")
    make.add_argument("--max-keypoints", type=int, default=8, help="keypoints per source image (default 8)")
    make.add_argument("--min-keypoints", type=int, default=3, help="redraw a warp that keeps fewer keypoints (default 3)")
    make.add_argument("--warp-strength", type=float, default=1.0, help="scales the geometric warp ranges; 0 = identity (default 1)")
    make.add_argument("--photometric-strength", type=float, default=1.0, help="scales the colour/noise jitter; 0 = none (default 1)")
    make.set_defaults(func=make_demo_spair)


def make_demo_spair(args: argparse.Namespace) -> int:
    from diffact.data.demo_spair import DEFAULT_CATEGORIES, build_demo_spair
    from diffact.data.spair import SPLITS, SPairDataset

    root = build_demo_spair(
        args.out,
        seed=args.seed,
        n_images=args.n_images,
        pairs_per_image=args.pairs_per_image,
        image_size=args.image_size,
        categories=args.categories or DEFAULT_CATEGORIES,
        max_keypoints=args.max_keypoints,
        min_keypoints=args.min_keypoints,
        warp_strength=args.warp_strength,
        photometric_strength=args.photometric_strength,
    )
    counts = []
    for split in SPLITS:
        dataset = SPairDataset(root, split)
        counts.append(f"{split}: {len(dataset)} pairs / {dataset.n_keypoints} keypoints")
    logging.getLogger("diffact").info("wrote demo SPair tree %s (%s)", root, "; ".join(counts))
    return 0


def _register_make_demo_seg(subparsers) -> None:
    from diffact.data.demo_seg import DemoSegConfig

    p = subparsers.add_parser("make-demo-seg", help="write a demo label-scarce dataset (DDPM-seg layout)")
    p.add_argument("--kind", choices=["simple", "complex"], required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=default_of(DemoSegConfig, "seed"))
    p.add_argument("--size", type=int, default=default_of(DemoSegConfig, "size"), help="image side in pixels")
    p.add_argument("--train", type=int, default=default_of(DemoSegConfig, "n_train"), help="training images")
    p.add_argument("--test", type=int, default=default_of(DemoSegConfig, "n_test"), help="test images")
    p.set_defaults(func=cmd_make_demo_seg)


def cmd_make_demo_seg(args) -> int:
    from diffact.data.demo_seg import DemoSegConfig, make_demo_seg

    make_demo_seg(args.out, DemoSegConfig(kind=args.kind, size=args.size, n_train=args.train, n_test=args.test,
                                          seed=args.seed))
    return 0


def _register_make_demo_ade(subparsers) -> None:
    from diffact.data.demo_ade import DemoAdeConfig

    p = subparsers.add_parser("make-demo-ade", help="write the demo segmentation scenes in ADE20K's layout")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=default_of(DemoAdeConfig, "seed"))
    p.add_argument("--size", type=int, default=default_of(DemoAdeConfig, "size"), help="image side in pixels")
    p.add_argument("--train", type=int, default=default_of(DemoAdeConfig, "n_train"), help="training images")
    p.add_argument("--val", type=int, default=default_of(DemoAdeConfig, "n_val"), help="validation images")
    p.set_defaults(func=cmd_make_demo_ade)


def cmd_make_demo_ade(args) -> int:
    from diffact.data.demo_ade import DemoAdeConfig, make_demo_ade

    make_demo_ade(args.out, DemoAdeConfig(size=args.size, n_train=args.train, n_val=args.val, seed=args.seed))
    return 0


def _register_make_paper_fixtures(subparsers) -> None:
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
    p.add_argument("--datasets", type=_comma_list, default=list(DATASETS), metavar="A,B",
                   help=f"which fixtures to write (default all: {','.join(DATASETS)})")
    p.add_argument("--counts", default="", metavar="KEY=N,...",
                   help=f"sizes (spair-<split>: images per category; spair-<split>-360: pairs per category in DHF's "
                        f"subset file); defaults: {keys}")
    p.add_argument("--ddpmseg-train", type=int, metavar="N",
                   help=f"training images of Horse-21 and Bedroom-28 (same as --counts ddpmseg-train=N; the paper: 30 "
                        f"and 40; default {defaults.ddpmseg_train})")
    p.add_argument("--ddpmseg-test", type=int, metavar="N",
                   help=f"test images of Horse-21 and Bedroom-28 (the paper: 20; default {defaults.ddpmseg_test})")
    p.add_argument("--spair-categories", type=_comma_list, default=list(SPAIR_DEFAULT_CATEGORIES), metavar="A,B",
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


# ---------------------------------------------------------------------------------------------------
# Checks of dataset roots (and of a whole profile)


def _register_check_data(subparsers) -> None:
    p = subparsers.add_parser("check-data",
                              help="check every dataset root and model of a profile; all problems at once")
    p.add_argument("--config", required=True, help="profile, e.g. config/paper.yaml")
    p.add_argument("--schema", help="JSON schema (default: schema.yaml beside the config)")
    p.add_argument("--skip-datasets", action="store_true", help="check the models only")
    p.add_argument("--skip-models", action="store_true", help="check the datasets only")
    p.add_argument("--offline", choices=["auto", "yes", "no"], default="auto",
                   help="hub models: only the local cache (yes), also the hub (no), or as HF_HUB_OFFLINE says (auto)")
    p.add_argument("--report", help="also write the problems and notes as JSON here")
    p.set_defaults(func=run_check_data)


def run_check_data(args) -> int:
    from diffact.checks import check_profile
    from diffact.utils.io import write_json
    from diffact.workflow import apply_hub_cache, read_profile

    path = Path(args.config)
    config = read_profile(path)
    apply_hub_cache(config)
    schema = Path(args.schema) if args.schema else path.parent / "schema.yaml"
    offline = {"auto": None, "yes": True, "no": False}[args.offline]
    report = check_profile(config, schema_path=schema if schema.is_file() else None,
                           datasets=not args.skip_datasets, models=not args.skip_models, offline=offline)
    for note in report.notes:
        print(f"note: {note}")
    for problem in report.problems:
        print(f"PROBLEM: {problem}")
    if args.report:
        write_json(args.report, {"config": str(path), "ok": report.ok, "problems": report.problems,
                                 "notes": report.notes})
    n_datasets = 0 if args.skip_datasets else len(config.get("datasets") or {})
    n_models = 0 if args.skip_models else len(config.get("models") or {})
    verdict = "ready" if report.ok else f"{len(report.problems)} problem(s)"
    print(f"check-data {path}: {n_datasets} datasets, {n_models} models: {verdict}")
    return 0 if report.ok else 1


def _register_check_spair(subparsers) -> None:
    check = subparsers.add_parser(
        "check-spair",
        help="validate an SPair-71k root (real or demo); exits 1 and lists every problem if any",
    )
    check.add_argument("--root", required=True, help="SPair-71k root (holds JPEGImages/ and PairAnnotation/)")
    check.add_argument("--splits", default="trn,val,test", help="comma-separated splits to check (default trn,val,test)")
    check.set_defaults(func=check_spair)


def check_spair(args: argparse.Namespace) -> int:
    from diffact.data.spair import SPLITS, check_spair_root
    from diffact.utils.errors import ConfigError

    splits = _comma_list(args.splits)
    unknown = [s for s in splits if s not in SPLITS]
    if unknown or not splits:
        raise ConfigError(f"--splits must name some of {', '.join(SPLITS)}, got {args.splits!r}")
    problems = check_spair_root(args.root, splits)
    for problem in problems:
        print(problem)
    if problems:
        print(f"check-spair: {len(problems)} problem(s) in {args.root}")
        return 1
    print(f"check-spair: {args.root} is a valid SPair-71k root ({', '.join(splits)})")
    return 0


def _register_seg_check(subparsers) -> None:
    p = subparsers.add_parser("seg-check", help="check an ADE20K or Cityscapes root; exit 1 if it has problems")
    p.add_argument("--layout", choices=SEGMENTATION_LAYOUTS, required=True)
    p.add_argument("--root", required=True)
    p.set_defaults(func=seg_check)


def seg_check(args) -> int:
    from diffact.data.ade20k import check_ade20k
    from diffact.data.cityscapes import check_cityscapes

    problems = (check_ade20k if args.layout == "ade20k" else check_cityscapes)(args.root)
    for problem in problems:
        print(problem)
    if not problems:
        print(f"{args.root}: OK ({args.layout})")
    return 1 if problems else 0


def _register_cityscapes_train_ids(subparsers) -> None:
    p = subparsers.add_parser("cityscapes-train-ids",
                              help="write *_gtFine_labelTrainIds.png from *_gtFine_labelIds.png")
    p.add_argument("--root", required=True)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cityscapes_train_ids)


def cityscapes_train_ids(args) -> int:
    from diffact.data.cityscapes import write_train_ids

    count = write_train_ids(args.root, overwrite=args.overwrite)
    log.info("wrote %d *_gtFine_labelTrainIds.png under %s", count, args.root)
    return 0
