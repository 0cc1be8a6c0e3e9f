"""CLI for label-scarce segmentation (paper §2.10, §5):

* ``diffact scarce``         — one activation set (layers concatenated) → mIoU per random split;
* ``diffact scarce-screen``  — every activation alone → one row each with mean ± std mIoU (Tables 4–6 input);
* ``diffact scarce-compare`` — rank screens per resolution beside the paper's Tables 4–6 and compose a set.

Feature stores must hold one shard per dataset image under the id ``<split>/<stem>`` (e.g. ``train/img_000``,
the original split; ``diffact extract --dataset-kind ddpmseg`` writes exactly these), or the bare ``<stem>``.
The demo datasets come from ``diffact make-demo-seg`` (:mod:`diffact.data.commands`).
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def _add_protocol_args(p) -> None:
    # The defaults are the dataclasses' (the paper's protocol, §2.10), written there once.
    from diffact.tasks.scarce.settings import EnsembleTrainSettings as Train
    from diffact.tasks.scarce.settings import ScarceConfig
    from diffact.utils.args import default_of

    p.add_argument("--store", required=True, action="append", metavar="[LABEL=]DIR",
                   help="feature store folder holding every dataset image; `scarce` takes several (LABEL=DIR, "
                        "one --layers each, e.g. Ours-XL-t), their features concatenated per pixel in this order")
    p.add_argument("--dataset", required=True, help="DDPM-seg layout folder (with real/train, real/test)")
    p.add_argument("--dataset-name", help="known dataset (e.g. horse_21) when the folder name does not say")
    p.add_argument("--num-classes", type=int, help="number of classes when neither dataset.json nor the name says")
    p.add_argument("--splits", type=int, default=default_of(ScarceConfig, "splits"), help="random re-splits (paper: 5)")
    p.add_argument("--no-shuffle", action="store_true", help="use the original train/test split once")
    p.add_argument("--seed", type=int, default=default_of(ScarceConfig, "seed"))
    p.add_argument("--size", type=int, default=default_of(ScarceConfig, "size"), help="features/labels resized to SIZE² (paper: 256)")
    p.add_argument("--models", type=int, default=default_of(Train, "members"), help="ensemble members (paper: 10)")
    p.add_argument("--epochs", type=int, default=default_of(Train, "max_epochs"), help="max epochs (paper: 100; early stopping applies)")
    p.add_argument("--batch-size", type=int, default=default_of(Train, "batch_size"))
    p.add_argument("--lr", type=float, default=default_of(Train, "lr"))
    p.add_argument("--pixel-rate", type=float, default=default_of(ScarceConfig, "pixel_rate"), help="fraction of training pixels kept (paper: 1)")
    p.add_argument("--buffer-mb", type=float, default=default_of(ScarceConfig, "buffer_mb"), help="memory for one buffer of streamed pixels")
    p.add_argument("--max-batches", type=int, help="cap batches per epoch (smoke tests/benchmarks only)")
    p.add_argument("--upsample", choices=["nearest-bilinear", "bilinear"], default=default_of(ScarceConfig, "upsample"),
                   help="multi-layer sets: nearest to each store's largest map, then bilinear to SIZE² (the "
                        "authors' code, default), or bilinear from every native map")
    p.add_argument("--absent-classes", choices=["zero", "skip"], default=default_of(ScarceConfig, "absent"),
                   help="classes absent from gt and prediction: count as IoU 0 (DDPM-seg) or leave out")
    p.add_argument("--device", default=default_of(Train, "device"))


def register(subparsers) -> None:
    p = subparsers.add_parser("scarce", help="label-scarce segmentation mIoU of one activation set, per split")
    _add_protocol_args(p)
    p.add_argument("--layers", action="append",
                   help="comma-separated store layers, concatenated; once per --store; 'all': every layer of that "
                        "store, in its forward order")
    p.add_argument("--layers-from-csv", metavar="CSV:COLUMN:WHERE=VALUE",
                   help="instead of --layers (one store): the COLUMN of the CSV's rows whose WHERE column reads VALUE "
                        "(e.g. a composition CSV's activation:set=generic), in the CSV's order")
    p.add_argument("--out", required=True, help="CSV, one row per split")
    p.add_argument("--summary", help="JSON with mean ± std and per-class IoU (default: OUT with .json)")
    p.set_defaults(func=cmd_scarce)

    p = subparsers.add_parser("scarce-screen", help="label-scarce mIoU of each activation alone (mean ± std)")
    _add_protocol_args(p)
    p.add_argument("--layers", default="all", help="comma-separated layers, or 'all' (store order)")
    p.add_argument("--layers-from-csv", metavar="CSV:COLUMN:WHERE=VALUE",
                   help="instead of --layers: the COLUMN of the CSV's rows whose WHERE column reads VALUE (e.g. the "
                        "qualitative filter's layer:kept=True), in the CSV's order")
    p.add_argument("--out", required=True, help="CSV, one row per activation; rewritten after each activation")
    p.add_argument("--no-resume", action="store_true", help="recompute activations already in OUT")
    p.set_defaults(func=cmd_screen)

    p = subparsers.add_parser("scarce-compare", help="rank screens per resolution beside the paper (Tables 4-6)")
    p.add_argument("--simple", required=True, help="scarce-screen CSV on the simple dataset")
    p.add_argument("--complex", required=True, help="scarce-screen CSV on the complex dataset")
    p.add_argument("--paper-model", choices=["sdxl", "pgv2", "sd15", "none"], default="none",
                   help="print the paper's Tables 4-6 values for this model beside ours")
    p.add_argument("--out", required=True, help="ranking CSV")
    p.add_argument("--budget", type=int, help="channel budget: also compose generic + specific sets")
    p.add_argument("--budget-from-store", metavar="JSON",
                   help="instead of --budget: the channel total of every layer of a feature store (its complete.json), "
                        "e.g. the store of the practical set")
    p.add_argument("--resolutions", help="comma-separated resolutions to compose from (default: all)")
    p.add_argument("--composition-out", help="CSV of the composed sets (default: OUT with -composition.csv)")
    p.add_argument("--paper-generic", metavar="SET=L1,L2,...",
                   help="also list the paper's fixed generic set (Table 3's paper-generic row), e.g. "
                        "practical=up-level0-repeat0-vit-block7-out,...; needs --store-layers")
    p.add_argument("--store-layers", metavar="JSON",
                   help="a feature store's complete.json or meta.json: channels of --paper-generic's layers")
    p.set_defaults(func=cmd_compare)


ALL_LAYERS = "all"  # --layers all: every layer of the store, in its forward order


def _config(args):
    from diffact.tasks.scarce.ensemble import EnsembleTrainSettings
    from diffact.tasks.scarce.pipeline import ScarceConfig

    train = EnsembleTrainSettings(members=args.models, batch_size=args.batch_size, lr=args.lr,
                                  max_epochs=args.epochs, max_batches_per_epoch=args.max_batches, device=args.device)
    config = ScarceConfig(size=args.size, splits=args.splits, shuffle=not args.no_shuffle, seed=args.seed,
                          pixel_rate=args.pixel_rate, buffer_mb=args.buffer_mb, absent=args.absent_classes,
                          upsample=args.upsample, train=train)
    config.validate()
    return config


def _open(args):
    """The feature store (one --store) or the stores side by side (several), and the dataset."""
    from pathlib import Path

    from diffact.data.ddpmseg import open_ddpmseg
    from diffact.extract.store import FeatureStore
    from diffact.tasks.scarce.sources import CombinedStores

    dataset = open_ddpmseg(args.dataset, args.dataset_name, args.num_classes)
    stores = [_store_arg(value) for value in args.store]
    if len(stores) == 1:
        return FeatureStore.open(stores[0][1]), dataset
    return CombinedStores([(label or Path(root).name, FeatureStore.open(root)) for label, root in stores]), dataset


def _store_arg(value: str) -> tuple[str, str]:
    """``LABEL=DIR`` or ``DIR`` → (label, '' without one; folder)."""
    label, sep, root = value.partition("=")
    return (label, root) if sep else ("", value)


def _set_layers(args, store) -> list[str]:
    """--layers (one per --store) as the names the store reads: ``label:layer`` for several stores."""
    from diffact.tasks.scarce.pipeline import check_layers
    from diffact.tasks.scarce.sources import PART_SEP
    from diffact.utils.errors import ConfigError

    if args.layers_from_csv:
        if args.layers or len(args.store) != 1:
            raise ConfigError("--layers-from-csv takes the place of --layers and reads one --store")
        return check_layers(store, layers_from_csv(args.layers_from_csv))
    args.layers = args.layers or []
    if len(args.layers) != len(args.store):
        raise ConfigError(f"got {len(args.store)} --store and {len(args.layers)} --layers; give one --layers per store")
    if len(args.store) == 1:
        return check_layers(store, store.layers if args.layers[0] == ALL_LAYERS else args.layers[0].split(","))
    names = [f"{label}{PART_SEP}{name.strip()}" for (label, part), layers in zip(store.parts.items(), args.layers)
             for name in (part.layers if layers == ALL_LAYERS else layers.split(",")) if name.strip()]
    return check_layers(store, names)


def layers_from_csv(spec: str) -> list[str]:
    """``CSV:COLUMN:WHERE=VALUE`` → the COLUMN values of the CSV rows whose WHERE column reads VALUE (compared as
    text, so ``kept=True`` matches a boolean column), in the CSV's order. The layers a rule's command reads from a
    file made upstream (the filter's kept activations, a composed set) without Python in the rule's shell."""
    from pathlib import Path

    import pandas as pd

    from diffact.utils.errors import ConfigError, DataError

    path, column, condition = (spec.rsplit(":", 2) + ["", ""])[:3] if spec.count(":") >= 2 else (spec, "", "")
    where, sep, value = condition.partition("=")
    if not (path and column and where and sep):
        raise ConfigError(f"--layers-from-csv {spec!r}: expected CSV:COLUMN:WHERE=VALUE (e.g. filter.csv:layer:kept=True)")
    if not Path(path).is_file():
        raise DataError(f"--layers-from-csv: {path} does not exist")
    frame = pd.read_csv(path)
    missing = [c for c in (column, where) if c not in frame.columns]
    if missing:
        raise DataError(f"--layers-from-csv: {path} has no column {missing[0]!r} (columns: {', '.join(frame.columns)})")
    return frame.loc[frame[where].astype(str) == value, column].astype(str).tolist()


def store_channels(done_file: str) -> int:
    """The channel total of every layer of a feature store, from its complete.json (``--budget-from-store``)."""
    import json
    from pathlib import Path

    from diffact.utils.errors import DataError

    if not Path(done_file).is_file():
        raise DataError(f"--budget-from-store: {done_file} does not exist (a feature store's complete.json)")
    layers = json.loads(Path(done_file).read_text()).get("layers") or {}
    if not layers:
        raise DataError(f"--budget-from-store: {done_file} lists no layers")
    return sum(int(shape[0]) for shape in layers.values())


def cmd_scarce(args) -> int:
    from pathlib import Path

    import pandas as pd

    from diffact.tasks.scarce.pipeline import run_scarce, split_rows, summary_row
    from diffact.utils.io import write_csv, write_json

    config = _config(args)
    store, dataset = _open(args)
    layers = _set_layers(args, store)
    channels = store.channels(layers)
    results = run_scarce(store, dataset, layers, config)
    write_csv(args.out, pd.DataFrame(split_rows(results, layers, channels, config)))
    summary = summary_row(results, layers, channels, config, dataset.info.class_names)
    summary.update(dataset=str(dataset.root), store=str(store.root), stores=list(args.store), splits=[
        {"split": r.split, "miou": r.miou, "train_ids": r.train_ids, "test_ids": r.test_ids, "training": r.training}
        for r in results])
    write_json(args.summary or Path(args.out).with_suffix(".json"), summary)
    log.info("mIoU %.2f ± %.2f over %d splits → %s", summary["miou_mean"], summary["miou_std"], len(results), args.out)
    return 0


def cmd_screen(args) -> int:
    from pathlib import Path

    import pandas as pd

    from diffact.tasks.scarce.pipeline import check_layers, load_labels, run_scarce, summary_row
    from diffact.utils.errors import ConfigError
    from diffact.utils.io import write_csv

    config = _config(args)
    if len(args.store) != 1:
        raise ConfigError("scarce-screen reads one --store (each activation alone)")
    store, dataset = _open(args)
    if args.layers_from_csv:
        layers = check_layers(store, layers_from_csv(args.layers_from_csv))
    else:
        layers = store.layers if args.layers == ALL_LAYERS else check_layers(store, args.layers.split(","))
    rows: list[dict] = []
    if Path(args.out).is_file() and not args.no_resume:
        previous = pd.read_csv(args.out)
        same = "protocol" in previous and (previous["protocol"] == config.protocol_key()).all()
        if same:
            rows = previous[previous["activation"].isin(layers)].to_dict("records")
            log.info("resuming: %d of %d activations already in %s", len(rows), len(layers), args.out)
        else:
            log.warning("%s was made with other settings; recomputing every activation", args.out)
    done = {row["activation"] for row in rows}
    labels = load_labels(dataset, config.size)  # shared by every activation
    for i, name in enumerate(layers):
        if name in done:
            continue
        log.info("[%d/%d] %s", i + 1, len(layers), name)
        results = run_scarce(store, dataset, [name], config, labels=labels)
        row = summary_row(results, [name], store.shape(name)[0], config)
        row.pop("class_iou")
        c, h, w = store.shape(name)
        row.update(height=h, width=w, dataset=dataset.info.name)
        rows.append(row)
        order = {n: k for k, n in enumerate(layers)}
        frame = pd.DataFrame(rows).sort_values("activation", key=lambda s: s.map(order), kind="stable")
        write_csv(args.out, frame)  # rewritten after every activation: a killed screen resumes from here
    log.info("screened %d activations → %s", len(layers), args.out)
    return 0


def paper_generic_selection(spec: str, store_layers: str | None, scores):
    """``SET=L1,L2,...`` → the composed-set rows of the paper's fixed generic set (``set`` = paper-generic), channels
    read from the store the Table 3 runs use (``--store-layers``)."""
    import json
    from pathlib import Path

    from diffact.analysis import compare
    from diffact.utils.errors import DataError

    set_name, sep, names = spec.partition("=")
    layers = [n for n in names.split(",") if n]
    if not sep or not set_name or not layers:
        raise DataError(f"--paper-generic {spec!r}: expected SET=LAYER,LAYER,... (e.g. practical=up-level0-...)")
    if not store_layers or not Path(store_layers).is_file():
        raise DataError(f"--store-layers {store_layers!r}: a feature store's complete.json is needed for "
                        "--paper-generic's channel counts")
    shapes = json.loads(Path(store_layers).read_text()).get("layers") or {}
    missing = [n for n in layers if n not in shapes]
    if missing:
        raise DataError(f"{store_layers}: the paper's {set_name} set names {', '.join(missing)}, which this store "
                        f"does not hold; Table 3's paper-generic row needs every layer in the screen store")
    channels = {n: int(shapes[n][0]) for n in layers}
    rows = compare.fixed_selection(scores, layers, channels, reason=f"the paper's {set_name} set (fixed)")
    return rows.assign(set="paper-generic")


def cmd_compare(args) -> int:
    from pathlib import Path

    import pandas as pd

    from diffact.analysis import compare
    from diffact.utils.errors import DataError
    from diffact.utils.io import write_csv

    screens = {}
    for scene, path in (("simple", args.simple), ("complex", args.complex)):
        if not Path(path).is_file():
            raise DataError(f"{path}: screening CSV not found (--{scene})")
        frame = pd.read_csv(path)
        missing = {"activation", "miou_mean"} - set(frame.columns)
        if missing:
            raise DataError(f"{path}: missing columns {sorted(missing)}; expected a scarce-screen CSV")
        screens[scene] = frame
    scores = compare.scores_from_screens(screens["simple"], screens["complex"])
    if args.budget_from_store:
        args.budget = store_channels(args.budget_from_store)
    paper = None if args.paper_model == "none" else compare.paper_reference(args.paper_model)
    ranked = compare.rank_per_resolution(scores, paper)
    write_csv(args.out, ranked)
    print(compare.format_ranking(ranked))
    if paper is not None:
        print("\nrank agreement with the paper (Spearman):")
        print(compare.rank_agreement(ranked).to_string(index=False))
    if args.budget:
        if "channels" not in scores.columns:
            raise DataError(f"{args.simple}: no 'channels' column; cannot compose within a channel budget")
        channels = dict(zip(scores["activation"], scores["channels"].astype(int)))
        resolutions = args.resolutions.split(",") if args.resolutions else None
        complete = scores.dropna(subset=["simple", "complex"])
        generic = compare.compose_generic(complete, channels, args.budget, resolutions).assign(set="generic")
        specific = compare.compose_specific(complete, channels, int(generic["channels"].sum()), "simple",
                                            resolutions).assign(set="specific")
        parts = [generic, specific]
        if args.paper_generic:
            parts.insert(1, paper_generic_selection(args.paper_generic, args.store_layers, complete))
        composed = pd.concat(parts, ignore_index=True)
        out = args.composition_out or str(Path(args.out).with_name(Path(args.out).stem + "-composition.csv"))
        write_csv(out, composed)
        print(f"\ncomposed sets (budget {args.budget}):")
        print(composed.to_string(index=False))
    return 0
