"""CLI: ``diffact pck-screen`` (NN PCK per activation of a store), ``diffact pck-pixels`` (raw-pixel
reference) and ``diffact pck-table`` (the demo table: trained vs random weights vs pixels)."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    from diffact.data.spair import add_subset_policy_args

    p = subparsers.add_parser("pck-screen", help="nearest-neighbour PCK of every activation in a feature store")
    p.add_argument("--store", required=True, help="feature store folder (from diffact extract)")
    p.add_argument("--dataset-root", required=True, help="SPair-71k-layout root")
    p.add_argument("--split", default="test")
    p.add_argument("--subset")
    add_subset_policy_args(p)
    p.add_argument("--layers", help="comma-separated subset of the store's layers (default: all)")
    p.add_argument("--eval-size", type=int, default=512, help="features are upsampled to this square (paper: 512)")
    p.add_argument("--model-name", default="", help="label written into the 'model' column")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's; 1 is fastest on a busy machine)")
    p.add_argument("--out", required=True, help="CSV")
    p.set_defaults(func=cmd_screen)

    p = subparsers.add_parser("pck-pixels", help="PCK of the raw-pixel patch reference")
    p.add_argument("--dataset-root", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--subset")
    add_subset_policy_args(p)
    p.add_argument("--image-size", type=int, required=True)
    p.add_argument("--eval-size", type=int, default=512)
    p.add_argument("--patch", type=int, default=5)
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_pixels)

    from diffact.tasks.correspondence.practical import DEFAULT_METRIC, DEFAULT_TOP

    p = subparsers.add_parser("practical-set", help="a practical layer set chosen from a pck-screen CSV (ours; for "
                                                    "families the paper gives none, e.g. DiTs)")
    p.add_argument("--screen", required=True, help="pck-screen CSV of a validation split")
    p.add_argument("--family", required=True, help="the model's family (written into the set file)")
    p.add_argument("--model-name", required=True, help="the model the screen ran on (for the description)")
    p.add_argument("--top", type=int, default=DEFAULT_TOP, help=f"activations in the set (default {DEFAULT_TOP})")
    p.add_argument("--metric", default=DEFAULT_METRIC, help=f"screen column to rank by (default {DEFAULT_METRIC})")
    p.add_argument("--out", required=True, help="layer-set YAML")
    p.set_defaults(func=cmd_practical_set)

    p = subparsers.add_parser("pck-table", help="merge screening CSVs into one table (adds a 'source' column)")
    p.add_argument("inputs", nargs="+", metavar="LABEL=CSV")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_table)


def screen_pairs(args):
    """The screened pairs and the protocol label of the rows (``nn/<split>[/<subset label>]/eval<size>``: a
    drawn subset reads e.g. ``test-360-drawn``)."""
    from diffact.data.spair import SPairDataset, subset_options_from_args

    dataset = SPairDataset(args.dataset_root, split=args.split, subset=args.subset, **subset_options_from_args(args))
    subset = f"/{dataset.subset_label}" if args.subset else ""
    return list(dataset), f"nn/{args.split}{subset}/eval{args.eval_size}"


def cmd_screen(args) -> int:
    from diffact.extract.store import FeatureStore
    from diffact.tasks.correspondence.screen import screen_store, without_timings
    from diffact.utils.io import write_csv

    from diffact.tasks.correspondence.train_commands import set_threads

    set_threads(args.threads)
    store = FeatureStore.open(args.store)
    pairs, protocol = screen_pairs(args)
    layers = args.layers.split(",") if args.layers else None
    table = screen_store(store, pairs, layers, eval_size=args.eval_size)
    table.insert(0, "model", args.model_name or store.settings.get("model", {}).get("source", ""))
    table.insert(1, "protocol", protocol)
    write_csv(args.out, without_timings(table))
    log.info("wrote %s (%d activations)", args.out, len(table))
    return 0


def cmd_practical_set(args) -> int:
    from diffact.tasks.correspondence.practical import write_practical_set

    spec = write_practical_set(args.screen, args.family, args.model_name, args.out, args.top, args.metric)
    log.info("wrote %s: %s", args.out, ", ".join(spec["layers"]))
    return 0


def cmd_pixels(args) -> int:
    from diffact.tasks.correspondence.screen import screen_pixels, without_timings
    from diffact.utils.io import write_csv

    from diffact.tasks.correspondence.train_commands import set_threads

    set_threads(args.threads)
    pairs, protocol = screen_pairs(args)
    table = screen_pixels(pairs, args.image_size, args.eval_size, args.patch)
    table.insert(0, "model", "none")
    table.insert(1, "protocol", protocol)
    write_csv(args.out, without_timings(table))
    return 0


def cmd_table(args) -> int:
    import pandas as pd

    from diffact.utils.errors import ConfigError
    from diffact.utils.io import write_csv

    frames = []
    for item in args.inputs:
        label, sep, path = item.partition("=")
        if not sep:
            raise ConfigError(f"expected LABEL=CSV, got {item!r}")
        frame = pd.read_csv(path)
        frame.insert(0, "source", label)
        frames.append(frame)
    write_csv(args.out, pd.concat(frames, ignore_index=True))
    return 0
