"""CLI of semantic correspondence (paper §2.8, Table 1):

* ``diffact pck-screen``    — nearest-neighbour PCK of every activation in a feature store;
* ``diffact pck-pixels``    — the raw-pixel patch reference;
* ``diffact practical-set`` — a practical layer set chosen from a validation screen (ours, for families the
  paper gives none);
* ``diffact pck-table``     — the demo table: screens side by side (trained vs random weights vs pixels);
* ``diffact corr-train``    — train the 3×3 aggregation conv on trn-split stores, evaluate on val every N steps,
  save checkpoints (safetensors) and ``evaluations.csv``;
* ``diffact corr-evaluate`` — one Table 1 number: method ``nn``/``trained`` × protocol ``paper``/``heldout``;
* ``diffact corr-table1``   — merge the numbers (and entries that cannot run) with the paper's.

The demo SPair-71k data come from ``diffact make-demo-spair`` (:mod:`diffact.data.commands`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def _add_eval_grid(p, device: bool = True) -> None:
    from diffact.tasks.correspondence.settings import AggregationTrainSettings as Train
    from diffact.utils.args import default_of

    p.add_argument("--feature-size", type=int, default=default_of(Train, "feature_size"),
                   help="every layer is resized to this square before concat (paper 128)")
    p.add_argument("--eval-size", type=int, default=default_of(Train, "eval_size"),
                   help="features are upsampled to this square for the NN search (paper 512)")
    if device:  # corr-evaluate has the extraction's --device (the same default, auto)
        p.add_argument("--device", default="auto", help="torch device for the conv and matching (default: cuda if available)")


def register(subparsers) -> None:
    _register_screens(subparsers)
    _register_table1(subparsers)


def _register_table1(subparsers) -> None:
    from diffact.data.spair import add_subset_policy_args
    from diffact.tasks.correspondence.settings import AggregationTrainSettings as Train
    from diffact.utils.args import default_of

    p = subparsers.add_parser("corr-train", help="train the correspondence aggregation conv (paper §2.8) on feature stores")
    p.add_argument("--train-store", action="append", default=[],
                   help="trn-split feature store; repeat once per model of a multi-model set; DIR,DIR,... = that "
                        "store's noise draws (one sampled per image and visit, correspondence.table1.noise: draws)")
    p.add_argument("--val-store", action="append", default=[],
                   help="val-split feature store(s), same models and order; DIR,DIR,... = noise draws, as --train-store")
    p.add_argument("--train-extract", action="append", default=[], metavar="ARGS",
                   help="instead of --train-store (correspondence.table1.noise: stream): the diffact extract arguments "
                        "of the trn split's store, one quoted string per model; every image is extracted anew at every "
                        "visit with noise seeded by (--seed, split, image, visit), as GDF does")
    p.add_argument("--val-extract", action="append", default=[], metavar="ARGS",
                   help="instead of --val-store: the val split's diffact extract arguments, as --train-extract")
    p.add_argument("--dataset-root", required=True, help="SPair-71k-layout root")
    p.add_argument("--val-subset", default="val-360", help="validation subset (default val-360; 'all' for the whole split)")
    add_subset_policy_args(p)
    _add_eval_grid(p)
    # the paper's training (§2.8), written once in AggregationTrainSettings
    p.add_argument("--epochs", type=int, default=default_of(Train, "epochs"))
    p.add_argument("--pairs-per-epoch", type=int, default=default_of(Train, "pairs_per_epoch"))
    p.add_argument("--eval-every", type=int, default=default_of(Train, "eval_every"))
    p.add_argument("--lr", type=float, default=default_of(Train, "lr"))
    p.add_argument("--weight-decay", type=float, default=default_of(Train, "weight_decay"))
    p.add_argument("--seed", type=int, default=default_of(Train, "seed"))
    p.add_argument("--out-dir", required=True, help="run folder (replaced atomically): evaluations.csv, train_log.csv, checkpoints/")
    p.add_argument("--keep-best", metavar="METRIC",
                   help="keep only the checkpoint the heldout protocol selects by this validation column (e.g. "
                        "pck_img@0.10; corr-evaluate --select-metric); default: keep every checkpoint")
    p.set_defaults(func=cmd_train)

    p = subparsers.add_parser("corr-evaluate", help="one Table 1 number: nn or trained, paper or heldout protocol")
    p.add_argument("--method", required=True, choices=["nn", "trained"])
    p.add_argument("--protocol", required=True, choices=["paper", "heldout"])
    p.add_argument("--store", action="append", default=[], help="feature store(s) of the evaluated split (val for paper, test for heldout); not needed for trained+paper")
    p.add_argument("--layers-file", action="append", default=[],
                   help="method nn: score only the layers of this layer-set file (one per --store, or one for the "
                        "streamed extraction; e.g. a screen-chosen practical.yaml); default: every layer")
    p.add_argument("--run", help="corr-train run folder (method trained)")
    # Method nn can stream instead of reading --store (issue #19): the arguments of `diffact extract` define the
    # store it would read (rules pass its workflow.extract_args); --dataset-root, --split and --subset are shared:
    # the evaluated pairs (default split: val for paper, test for heldout; subset e.g. test-360, 'all' = whole split).
    from diffact.extract.commands import add_extraction_args

    add_extraction_args(p, required=False)
    p.add_argument("--extract", action="append", default=[], metavar="ARGS",
                   help="instead of --store (correspondence.table1.noise: stream): the evaluated split's diffact "
                        "extract arguments, one quoted string per model; each image is extracted anew per pair with "
                        "noise seeded by (--seed, split, image, visit), as corr-train --val-extract")
    p.add_argument("--seed", type=int, default=0, help="with --extract: corr-train's --seed")
    p.add_argument("--buffer-mb", type=float, default=1024,
                   help="streaming: the most memory the cache of extracted images may hold, in MB (default %(default)s)")
    p.add_argument("--select-metric", default="pck_img@0.10", help="heldout: validation column that selects the checkpoint")
    _add_eval_grid(p, device=False)
    p.add_argument("--entry", default="", help="row label: model or combination name")
    p.add_argument("--layer-set", default="", help="row label: the layer set (Table 1 name)")
    p.add_argument("--models", default="", help="row label: models joined by '+'")
    p.add_argument("--families", default="", help="row label: model families joined by '+'")
    p.add_argument("--extracted-sets", default="", help="row label: the sets actually extracted, joined by '+'")
    p.add_argument("--paper-method", default="", help="the paper's Table 1 row this corresponds to (default: from family and set)")
    p.add_argument("--note", default="")
    p.add_argument("--out", required=True, help="one-row CSV")
    p.set_defaults(func=cmd_evaluate)

    p = subparsers.add_parser("corr-table1", help="merge corr-evaluate rows (and entries that cannot run) with the paper's Table 1")
    p.add_argument("results", nargs="*", help="corr-evaluate CSVs")
    p.add_argument("--plan-json", default="[]", help="JSON list of entries (name, layer_set, parts, families, unavailable, paper_method)")
    p.add_argument("--methods", default="nn,trained")
    p.add_argument("--protocols", default="paper,heldout")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_table1)


def _register_screens(subparsers) -> None:
    from diffact.data.spair import add_subset_policy_args
    from diffact.tasks.correspondence.settings import PAPER_EVAL_SIZE

    from diffact.extract.commands import add_extraction_args

    p = subparsers.add_parser(
        "pck-screen", help="nearest-neighbour PCK of every activation, from a feature store (--store) or streamed "
                           "from the model (the arguments of diffact extract instead of --store; no store written)")
    p.add_argument("--store", help="feature store folder (from diffact extract); --layers then picks a comma-separated "
                                   "subset of its layers (default: all)")
    # Streaming: the extraction is defined by exactly the arguments of `diffact extract` (rules pass the store's
    # workflow.extract_args), so the features scored are the ones that store would hold.
    add_extraction_args(p, required=False)
    p.set_defaults(split="test")
    p.add_argument("--buffer-mb", type=float, default=1024,
                   help="streaming: the most memory the cache of extracted images may hold, in MB (default "
                        "%(default)s); an image dropped from it is extracted again when a later pair needs it")
    p.add_argument("--eval-size", type=int, default=PAPER_EVAL_SIZE, help="features are upsampled to this square (paper: 512)")
    p.add_argument("--model-name", default="", help="label written into the 'model' column")
    p.add_argument("--out", required=True, help="CSV")
    p.set_defaults(func=cmd_pck_screen)

    p = subparsers.add_parser("pck-pixels", help="PCK of the raw-pixel patch reference")
    p.add_argument("--dataset-root", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--subset")
    add_subset_policy_args(p)
    p.add_argument("--image-size", type=int, required=True)
    p.add_argument("--eval-size", type=int, default=PAPER_EVAL_SIZE)
    p.add_argument("--patch", type=int, default=5)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_pck_pixels)

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
    p.set_defaults(func=cmd_pck_table)


def screen_pairs(args):
    """The screened pairs and the protocol label of the rows (``nn/<split>[/<subset label>]/eval<size>``: a
    drawn subset reads e.g. ``test-360-drawn``)."""
    from diffact.data.spair import SPairDataset, subset_options_from_args

    dataset = SPairDataset(args.dataset_root, split=args.split, subset=args.subset, **subset_options_from_args(args))
    subset = f"/{dataset.subset_label}" if args.subset else ""
    return list(dataset), f"nn/{args.split}{subset}/eval{args.eval_size}"


def cmd_pck_screen(args) -> int:
    from diffact.tasks.correspondence.screen import without_timings
    from diffact.utils.io import write_csv

    check_screen_source(args)
    pairs, protocol = screen_pairs(args)
    if args.store:
        from diffact.extract.store import FeatureStore
        from diffact.tasks.correspondence.screen import screen_store

        store = FeatureStore.open(args.store)
        layers = args.layers.split(",") if args.layers else None
        table = screen_store(store, pairs, layers, eval_size=args.eval_size)
        model = store.settings.get("model", {}).get("source", "")
    else:
        table, model = stream_screen(args, pairs), args.model
    table.insert(0, "model", args.model_name or model)
    table.insert(1, "protocol", protocol)
    write_csv(args.out, without_timings(table))
    log.info("wrote %s (%d activations)", args.out, len(table))
    return 0


def check_screen_source(args) -> None:
    """pck-screen reads a store or extracts: one of the two, and for extracting the whole model definition."""
    from diffact.extract.commands import require_stream_args
    from diffact.utils.errors import ConfigError

    if not args.dataset_root:
        raise ConfigError("pck-screen: --dataset-root is required (the SPair root of the pairs)")
    if args.store:
        if args.model:
            raise ConfigError("pck-screen: --store and --model exclude each other (score a store, or extract from "
                              "the model without storing)")
        return
    require_stream_args(args, "pck-screen", flags=("--model", "--family", "--layers"))
    if args.dataset_kind not in (None, "spair"):
        raise ConfigError(f"pck-screen scores SPair pairs: --dataset-kind must be spair, got {args.dataset_kind}")
    if args.buffer_mb < 0:
        raise ConfigError(f"pck-screen: --buffer-mb must be ≥ 0, got {args.buffer_mb}")
    args.dataset_kind = "spair"  # the subset policy arguments apply (dataset_policy_from_args)


def stream_screen(args, pairs):
    """The screen of the features ``diffact extract`` would store for these arguments, extracted batch by batch
    and scored without storing them (:func:`diffact.tasks.correspondence.stream.screen_stream`)."""
    from diffact.extract.commands import streamed_extraction_from_args
    from diffact.tasks.correspondence.stream import screen_stream

    return screen_stream(streamed_extraction_from_args(args), pairs, buffer_mb=args.buffer_mb, eval_size=args.eval_size,
                         label=str(args.model_name or args.model))


def cmd_practical_set(args) -> int:
    from diffact.tasks.correspondence.practical import write_practical_set

    spec = write_practical_set(args.screen, args.family, args.model_name, args.out, args.top, args.metric)
    log.info("wrote %s: %s", args.out, ", ".join(spec["layers"]))
    return 0


def cmd_pck_pixels(args) -> int:
    from diffact.tasks.correspondence.screen import screen_pixels, without_timings
    from diffact.utils.io import write_csv

    pairs, protocol = screen_pairs(args)
    table = screen_pixels(pairs, args.image_size, args.eval_size, args.patch)
    table.insert(0, "model", "none")
    table.insert(1, "protocol", protocol)
    write_csv(args.out, without_timings(table))
    return 0


def cmd_pck_table(args) -> int:
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


def _open_stores(paths):
    from diffact.extract.store import FeatureStore
    from diffact.utils.errors import DataError

    stores = []
    for path in paths:
        if not (Path(path) / "complete.json").is_file():
            raise DataError(f"feature store {path} is not complete (no complete.json); rerun its extraction")
        stores.append(FeatureStore.open(path))
    return stores


def _open_draws(values, flag: str) -> list[list]:
    """``--train-store``/``--val-store`` values (one per model, each DIR or DIR,DIR,... for noise draws) → the
    stores of each draw, each draw one store per model: [[model 1 draw k, model 2 draw k, ...] for k]."""
    from diffact.utils.errors import ConfigError, DataError

    per_model = [[d for d in value.split(",") if d] for value in values]
    counts = {len(dirs) for dirs in per_model}
    if len(counts) != 1 or 0 in counts:
        raise ConfigError(f"{flag}: every model needs the same number of noise-draw stores, got "
                          + ", ".join(f"{len(d)} for {v!r}" for d, v in zip(per_model, values)))
    opened = [_open_stores(dirs) for dirs in per_model]
    for stores in opened:
        roots = [str(Path(s.root).resolve()) for s in stores]
        seeds = [s.settings.get("extraction", {}).get("noise_seed") for s in stores]
        known = [seed for seed in seeds if seed is not None]  # hand-made stores may not record one
        if len(set(roots)) != len(roots) or len(set(known)) != len(known):
            raise DataError(f"{flag}: the noise-draw stores {', '.join(str(s.root) for s in stores)} are not different "
                            f"draws (noise seeds {seeds}); give each draw's own store")
        for store in stores[1:]:
            if store.meta["layers"] != stores[0].meta["layers"]:
                raise DataError(f"{flag}: noise-draw stores {stores[0].root} and {store.root} hold different layers "
                                "or shapes; draws must come from the same model and layer set")
    return [list(draw) for draw in zip(*opened)]


def _pair_features(draws, size: int, device, seed: int, stream: str):
    """One draw: its StorePairFeatures; several: a NoiseDrawFeatures sampling one per image and visit, each
    draw's resized-map cache a share of the one cache (the memory bound stays that of one store)."""
    from diffact.tasks.correspondence.aggregation import DEFAULT_CACHE_BYTES, NoiseDrawFeatures, StorePairFeatures

    if len(draws) == 1:
        return StorePairFeatures(draws[0], size, device=device)
    share = DEFAULT_CACHE_BYTES // len(draws)
    return NoiseDrawFeatures([StorePairFeatures(d, size, device=device, cache_bytes=share) for d in draws], seed, stream)


def _check_same_layers(train, val) -> None:
    from diffact.utils.errors import DataError

    if len(train) != len(val):
        raise DataError(f"{len(train)} training stores but {len(val)} evaluation stores: give one per model, in the same order")
    for a, b in zip(train, val):
        if a.meta["layers"] != b.meta["layers"]:
            raise DataError(f"stores {a.root} and {b.root} hold different layers or shapes; both must come from the same model and layer set")


def cmd_train(args) -> int:
    from diffact.data.spair import SPairDataset, subset_options_from_args
    from diffact.utils.errors import ConfigError
    from diffact.models.loading import pick_device
    from diffact.tasks.correspondence.aggregation import AggregationTrainSettings, train_aggregation
    from diffact.tasks.correspondence.screen import without_timings
    from diffact.utils.io import atomic_dir, write_csv, write_json

    settings = AggregationTrainSettings(epochs=args.epochs, pairs_per_epoch=args.pairs_per_epoch,
                                        eval_every=args.eval_every, lr=args.lr, weight_decay=args.weight_decay,
                                        seed=args.seed, feature_size=args.feature_size, eval_size=args.eval_size)
    device = pick_device(args.device)
    if args.train_extract or args.val_extract:
        train_features, val_features = _fresh_noise_features(args, settings, device)
        train_draws = val_draws = []
        noise = {"noise": "stream", "noise_draws": 0}
    else:
        if not (args.train_store and args.val_store):
            raise ConfigError("corr-train needs --train-store and --val-store, or --train-extract and --val-extract")
        train_draws, val_draws = _open_draws(args.train_store, "--train-store"), _open_draws(args.val_store, "--val-store")
        _check_same_layers(train_draws[0], val_draws[0])
        train_features = _pair_features(train_draws, settings.feature_size, device, settings.seed, "trn")
        val_features = _pair_features(val_draws, settings.feature_size, device, settings.seed, "val")
        noise = noise_record(train_draws, val_draws)
    # The pairs after the feature sources: a store that is not complete is named before a subset that is missing.
    train_pairs = list(SPairDataset(args.dataset_root, split="trn"))
    val_set = SPairDataset(args.dataset_root, split="val", subset=args.val_subset, **subset_options_from_args(args))
    val_pairs = list(val_set)
    log.info("training the aggregation conv: %d channels from %d model(s), %d trn pairs, %d val pairs, %d steps on %s, "
             "noise %s", train_features.channels, train_features.n_models, len(train_pairs), len(val_pairs),
             settings.steps, device, noise["noise"])
    meta = {"train_stores": [str(s.root) for s in train_draws[0]] if train_draws else [], "layers": train_features.layers,
            "n_models": train_features.n_models, **noise}
    out = Path(args.out_dir)
    with atomic_dir(out) as tmp:
        _, evaluations, train_log = train_aggregation(
            train_pairs, train_features, val_pairs, val_features, train_features.channels, settings,
            n_models=train_features.n_models, checkpoint_dir=tmp / "checkpoints", checkpoint_meta=meta, device=device,
            keep_best=args.keep_best)
        # These validation scores feed both protocols: paper = their max, heldout = the selection.
        evaluations.insert(1, "protocol", "val-per-checkpoint")
        evaluations.insert(2, "split", "val")
        evaluations.insert(3, "subset", val_set.subset_label)  # e.g. val-360, or val-360-drawn
        write_csv(tmp / "train_log.csv", train_log)
        visits = {role: list(f.visits) for role, f in (("trn", train_features), ("val", val_features))
                  if hasattr(f, "visits")}
        extractions = {role: f.extractions for role, f in (("trn", train_features), ("val", val_features))
                       if hasattr(f, "extractions")}
        write_json(tmp / "run.json", {**meta, "settings": settings.as_dict(), "val_subset": val_set.subset_label,
                                      "n_train_pairs": len(train_pairs), "device": str(device),
                                      "noise_draw_stores": {"trn": [[str(s.root) for s in d] for d in train_draws],
                                                            "val": [[str(s.root) for s in d] for d in val_draws]},
                                      "images_read_per_draw": visits,
                                      **({"image_extractions": extractions} if extractions else {})})
        write_csv(tmp / "evaluations.csv", without_timings(evaluations))  # speeds are in the log
    best = evaluations["pck_img@0.10"].max() if not evaluations.empty else float("nan")
    log.info("wrote %s (%d evaluations, best val PCK@0.1 img %.2f)", out, len(evaluations), best)
    return 0


def _extract_args(text: str, flag: str):
    """One ``--train-extract``/``--val-extract`` value parsed as the arguments of ``diffact extract``."""
    import argparse
    import shlex

    from diffact.extract.commands import add_extraction_args
    from diffact.utils.errors import ConfigError

    parser = argparse.ArgumentParser(prog=f"corr-train {flag}", add_help=False, exit_on_error=False)
    add_extraction_args(parser)
    try:
        args, unknown = parser.parse_known_args(shlex.split(text))
    except (argparse.ArgumentError, SystemExit) as err:
        raise ConfigError(f"{flag} {text!r}: not the arguments of diffact extract ({err})") from None
    if unknown:
        raise ConfigError(f"{flag}: unknown extract arguments {unknown}")
    if args.dataset_kind != "spair":
        raise ConfigError(f"{flag}: --dataset-kind must be spair, got {args.dataset_kind}")
    return args


def _fresh_split_features(texts, flag: str, role: str, size: int, seed: int, device, extractors=None):
    """FreshNoiseFeatures of one split from its ``diffact extract`` arguments (one string per model); ``extractors``
    (model and settings → loaded extractor) lets the trn and val splits of a model share one load."""
    from diffact.extract.commands import extraction_settings_from_args, images_from_args, model_from_args
    from diffact.streamed import extraction_over, load_extractor
    from diffact.tasks.correspondence.stream import FreshNoiseFeatures
    from diffact.utils.errors import ConfigError

    extractors = {} if extractors is None else extractors
    sources = []
    for text in texts:
        parsed = _extract_args(text, flag)
        if parsed.split not in (None, role):
            raise ConfigError(f"{flag}: names split {parsed.split!r}, expected {role}")
        parsed.split = role
        extraction = extraction_settings_from_args(parsed)
        model = model_from_args(parsed)
        key = (tuple(sorted(model.items(), key=str)), parsed.layers, repr(extraction))
        if key not in extractors:
            extractors[key] = load_extractor(model, parsed.layers, extraction, device=str(device))
        sources.append(extraction_over(extractors[key], extraction, images_from_args(parsed), 1,
                                       parsed.storage_dtype))
    return FreshNoiseFeatures(sources, size, role, seed, device=device)


def _fresh_noise_features(args, settings, device):
    """(trn, val) FreshNoiseFeatures of ``--train-extract``/``--val-extract``: a model's trn and val splits share one
    extractor when their arguments agree on everything but the dataset (they must: the conv trains and validates
    on the same features)."""
    from diffact.utils.errors import ConfigError

    if args.train_store or args.val_store:
        raise ConfigError("corr-train: --train-extract/--val-extract and --train-store/--val-store exclude each other")
    if len(args.train_extract) != len(args.val_extract):
        raise ConfigError(f"corr-train: {len(args.train_extract)} --train-extract but {len(args.val_extract)} "
                          "--val-extract; give one of each per model, in the same order")
    extractors: dict = {}
    trn = _fresh_split_features(args.train_extract, "--train-extract", "trn", settings.feature_size, settings.seed,
                                device, extractors)
    val = _fresh_split_features(args.val_extract, "--val-extract", "val", settings.feature_size, settings.seed,
                                device, extractors)
    if trn.layers != val.layers or len(extractors) != trn.n_models:
        raise ConfigError("corr-train: --train-extract and --val-extract must name the same models, layers and "
                          "extraction settings in the same order (only the dataset split may differ)")
    return trn, val

def noise_record(train_draws, val_draws) -> dict:
    """How the diffusion noise was drawn, for run.json and the Table 1 rows: ``fixed`` (one draw) or ``draws``
    with their number (trn and val must agree: both come from correspondence.table1.noise_draws)."""
    from diffact.utils.errors import ConfigError

    if len(train_draws) != len(val_draws):
        raise ConfigError(f"{len(train_draws)} noise draws of the training stores but {len(val_draws)} of the "
                          "validation stores; give both the same number")
    return {"noise": "fixed" if len(train_draws) == 1 else "draws", "noise_draws": len(train_draws)}


def _evaluation_pairs(args, stores, split):
    """(pairs, subset label) of the evaluated split: the label reads e.g. test-360-drawn for a drawn subset."""
    from diffact.data.spair import SPairDataset, subset_options_from_args

    root = args.dataset_root or (stores[0].settings.get("dataset", {}).get("root") if stores else None)
    if not root:
        from diffact.utils.errors import ConfigError

        raise ConfigError("--dataset-root is needed (the store does not record one)")
    dataset = SPairDataset(root, split=split, subset=args.subset, **subset_options_from_args(args))
    return list(dataset), dataset.subset_label


def _set_file_layers(paths: list[str], stores) -> list[list[str]] | None:
    """The layers of each ``--layers-file`` (one per store), each checked against its store; None without files."""
    from diffact.extract.layersets import read_set_file
    from diffact.utils.errors import ConfigError, DataError

    if not paths:
        return None
    if len(paths) != len(stores):
        raise ConfigError(f"--layers-file: got {len(paths)} files for {len(stores)} stores (one per --store)")
    layers = []
    for path, store in zip(paths, stores):
        names = read_set_file(path).get("layers")
        if not names:
            raise ConfigError(f"{path}: --layers-file needs an explicit 'layers' list")
        missing = [n for n in names if n not in store.layers]
        if missing:
            where = f"the feature store {store.root}" if hasattr(store, "root") else "the extracted activations"
            raise DataError(f"{path}: layers {missing} are not in {where}")
        layers.append(list(names))
    return layers


def _streamed_nn_features(args, split: str, device):
    """(pairs, subset label, StreamedPairFeatures) of ``corr-evaluate --method nn`` given the arguments of
    ``diffact extract`` instead of ``--store``: the numbers of the store those arguments would write."""
    from diffact.extract.commands import require_stream_args, streamed_extraction_from_args
    from diffact.tasks.correspondence.stream import StreamedPairFeatures
    from diffact.utils.errors import ConfigError

    if args.store:
        raise ConfigError("corr-evaluate: --store and --model exclude each other (score stores, or extract from the "
                          "model without storing)")
    require_stream_args(args, "corr-evaluate")
    if args.dataset_kind != "spair":
        raise ConfigError(f"corr-evaluate scores SPair pairs: --dataset-kind must be spair, got {args.dataset_kind}")
    if len(args.layers_file) > 1:
        raise ConfigError(f"--layers-file: got {len(args.layers_file)} files for one streamed extraction")
    source = streamed_extraction_from_args(args)
    pairs, subset = _evaluation_pairs(args, [], split)
    layers = _set_file_layers(args.layers_file, [source])
    features = StreamedPairFeatures(source, pairs, args.feature_size, layers=layers[0] if layers else None,
                                    device=device, buffer_mb=args.buffer_mb)
    return pairs, subset, features


def _fresh_eval_features(args, split: str, device):
    """(pairs, subset label, FreshNoiseFeatures) of ``corr-evaluate --extract``: the evaluated split's images extracted
    anew per pair, for the NN and for a trained run's heldout test alike."""
    from diffact.utils.errors import ConfigError

    if args.store or args.model:  # a trained run takes no --model, so this also keeps --store out there
        raise ConfigError("corr-evaluate: --extract excludes --store and --model")
    pairs, subset = _evaluation_pairs(args, [], split)
    return pairs, subset, _fresh_split_features(args.extract, "--extract", split, args.feature_size, args.seed, device)


def cmd_evaluate(args) -> int:
    import pandas as pd

    from diffact.models.loading import pick_device
    from diffact.tasks.correspondence.aggregation import StorePairFeatures, evaluate, load_checkpoint
    from diffact.tasks.correspondence.protocol import evaluation_split, heldout_result, paper_result
    from diffact.tasks.correspondence.screen import without_timings
    from diffact.utils.errors import ConfigError, DataError
    from diffact.utils.io import write_csv
    from diffact.utils.paths import checked_join

    device = pick_device(args.device)
    split = args.split or evaluation_split(args.protocol)
    row: dict = {}
    if args.model and args.method != "nn":
        raise ConfigError("corr-evaluate: the extraction arguments (--model ...) stream features for method nn only")
    if args.method == "trained":
        if args.layers_file:
            raise ConfigError("--layers-file is for method 'nn' (a trained run fixes its layers when it trains)")
        if not args.run:
            raise ConfigError("--run (a corr-train folder) is needed for method 'trained'")
        evaluations_path = Path(args.run) / "evaluations.csv"
        if not evaluations_path.is_file():
            raise DataError(f"{evaluations_path} does not exist; run corr-train first")
        evaluations = pd.read_csv(evaluations_path)
        if args.protocol == "paper":
            # The paper's number comes from the validation evaluations made during training.
            row = paper_result(evaluations, where=str(evaluations_path))
            split, subset = str(evaluations["split"].iloc[0]), str(evaluations["subset"].iloc[0])
        else:
            if args.extract:  # noise: stream: the test images extracted per pair, as the NN's --extract
                pairs, subset, features = _fresh_eval_features(args, split, device)
            else:
                stores = _open_stores(args.store)
                pairs, subset = _evaluation_pairs(args, stores, split)
                features = StorePairFeatures(stores, args.feature_size, device=device)

            def test_scores(selected):
                # The file name comes from evaluations.csv (data): it must stay inside the run's checkpoints/.
                checkpoint = checked_join(Path(args.run) / "checkpoints", str(selected["checkpoint"]),
                                          what=f"checkpoint named in {evaluations_path}")
                network, meta = load_checkpoint(checkpoint, device)
                if network.in_channels != features.channels:
                    raise DataError(f"checkpoint {selected['checkpoint']} expects {network.in_channels} channels, "
                                    f"the test stores give {features.channels}")
                return evaluate(pairs, features, network, args.eval_size)

            row = heldout_result(evaluations, test_scores, args.select_metric, where=str(evaluations_path))
    elif args.extract:
        pairs, subset, features = _fresh_eval_features(args, split, device)
        row = evaluate(pairs, features, None, args.eval_size)
        row["channels"] = features.channels
        log.info("streamed with fresh noise: %d image extractions for %d pairs", features.extractions, len(pairs))
    elif args.model:
        pairs, subset, features = _streamed_nn_features(args, split, device)
        row = evaluate(pairs, features, None, args.eval_size)
        row["channels"] = features.channels
        log.info("streamed: %d image extractions for %d pairs, feature cache peak %.4g MB", features.extracted,
                 len(pairs), features.cache.peak_bytes / 2**20)
    else:
        stores = _open_stores(args.store)
        if not stores:
            raise ConfigError("--store (or the extraction arguments, --model ...) is needed for method 'nn'")
        pairs, subset = _evaluation_pairs(args, stores, split)
        features = StorePairFeatures(stores, args.feature_size, layers=_set_file_layers(args.layers_file, stores),
                                     device=device)
        row = evaluate(pairs, features, None, args.eval_size)
        row["channels"] = features.channels
    noise = (run_noise(Path(args.run)) if args.method == "trained"
             else {"noise": "stream", "noise_draws": 0} if args.extract else {"noise": "fixed", "noise_draws": 1})
    labels = {"entry": args.entry, "layer_set": args.layer_set, "models": args.models, "families": args.families,
              "extracted_sets": args.extracted_sets, "method": args.method, "protocol": args.protocol,
              "eval_split": split, "eval_subset": subset, "status": "ok", "note": args.note,
              "paper_method": args.paper_method, "feature_size": args.feature_size, "eval_size": args.eval_size,
              **noise}
    frame = pd.DataFrame([{**labels, **row}])
    write_csv(args.out, without_timings(frame))
    log.info("%s %s/%s %s on %s/%s: PCK@0.1 img %.2f bbox %.2f (%s keypoints/s)", args.entry, args.layer_set, args.method,
             args.protocol, split, subset, row.get("pck_img@0.10", float("nan")), row.get("pck_bbox@0.10", float("nan")),
             f"{row.get('keypoints_per_s', float('nan')):.0f}")
    return 0


def run_noise(run: Path) -> dict:
    """The noise record of a corr-train run (run.json; runs written before noise draws existed used one draw)."""
    path = run / "run.json"
    record = json.loads(path.read_text()) if path.is_file() else {}
    return {"noise": record.get("noise", "fixed"), "noise_draws": int(record.get("noise_draws", 1))}


def cmd_table1(args) -> int:
    import pandas as pd

    from diffact.tasks.correspondence.table1 import build_table1, unavailable_rows
    from diffact.utils.errors import ConfigError
    from diffact.utils.io import write_csv

    try:
        plan = json.loads(args.plan_json)
    except json.JSONDecodeError as err:
        raise ConfigError(f"--plan-json is not valid JSON ({err})") from err
    methods = [m for m in args.methods.split(",") if m]
    protocols = [p for p in args.protocols.split(",") if p]
    table = build_table1([pd.read_csv(p) for p in args.results], unavailable_rows(plan, methods, protocols))
    write_csv(args.out, table)
    log.info("wrote %s (%d rows, %d not run)", args.out, len(table), int((table["status"] != "ok").sum()))
    return 0
