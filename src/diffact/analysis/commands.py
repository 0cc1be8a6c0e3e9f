"""CLI of the property analyses (paper §4–5.1):

* ``diffact noise-share``            — P1 noise share of every activation of a diffusion model (K noise draws);
* ``diffact property-maps``          — P2 granularity and P3 locality of every activation in a feature store;
* ``diffact properties-table``       — merge a model's scene tables with its NN PCK and the filter verdict;
* ``diffact qualitative-filter``     — the paper's qualitative filter on a layer set (e.g. the paper's pools);
* ``diffact train-control-unet``     — the Fig 15 control: a conventional U-Net trained on segmentation data;
* ``diffact control-features``       — the control's feature store and noise share;
* ``diffact properties-unavailable`` — which property figures the profile can make, with reasons.
"""

from __future__ import annotations

import logging

from diffact.utils.errors import ConfigError

log = logging.getLogger(__name__)


def _add_extraction_args(p) -> None:
    """The ``diffact extract`` arguments (so rules can pass ``workflow.extract_args`` unchanged); here
    ``--ensemble`` and ``--storage-dtype`` are accepted but unused: each draw is one noise sample and
    nothing is stored."""
    from diffact.extract.commands import add_extraction_args

    add_extraction_args(p)


def _pairs(items, what: str) -> dict[str, str]:
    out = {}
    for item in items or []:
        label, sep, path = item.partition("=")
        if not sep:
            raise ConfigError(f"{what}: expected LABEL=PATH, got {item!r}")
        out[label] = path
    return out


def register(subparsers) -> None:
    # the defaults of settings that have a dataclass are the dataclass's, written there once
    from diffact.extract.commands import add_extraction_args
    from diffact.extract.settings import ExtractionSettings
    from diffact.models.control_config import ControlConfig
    from diffact.utils.args import default_of

    p = subparsers.add_parser("noise-share", help="P1: per-activation noise share over K diffusion-noise draws")
    _add_extraction_args(p)
    p.add_argument("--draws", type=int, default=4, help="noise draws per image (K ≥ 2)")
    p.add_argument("--images", type=int, default=0, help="first N images of the dataset (0 = all)")
    p.add_argument("--out", required=True, help="CSV")
    p.set_defaults(func=cmd_noise_share)

    p = subparsers.add_parser("property-maps", help="P2 granularity + P3 locality of every activation, from a store "
                                                    "(--store) or streamed from the model (the arguments of diffact "
                                                    "extract instead of --store; no store written)")
    p.add_argument("--store", help="feature store folder")
    # Streaming: exactly the arguments of `diffact extract` (rules pass the store's workflow.extract_args), so the
    # features measured are the ones that store would hold.
    add_extraction_args(p, required=False)
    p.add_argument("--labels-root", help="DDPM-seg-layout dataset with the store's images (for locality)")
    p.add_argument("--images", type=int, default=0, help="first N store images (0 = all)")
    p.add_argument("--pairs", type=int, default=2000, help="same-label pixel pairs per image and resolution")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="CSV")
    p.add_argument("--figure-maps", metavar="NPZ",
                   help="also write the maps the property figures draw (PCA → RGB of every activation, and with "
                        "--labels-root the similarity to Fig 3c's query point) of the first --figure-images images "
                        "(diffact.viz.figure_maps), taken from the features the table reads")
    p.add_argument("--figure-images", type=int, default=2, help="images of --figure-maps (default 2)")
    p.set_defaults(func=cmd_property_maps)

    p = subparsers.add_parser("properties-table", help="merge a model's per-scene property tables")
    p.add_argument("--noise", nargs="+", required=True, metavar="SCENE=CSV")
    p.add_argument("--maps", nargs="+", required=True, metavar="SCENE=CSV")
    p.add_argument("--pck", help="NN PCK screening CSV (diffact pck-screen) of the same model")
    p.add_argument("--family", help="sd15 / sdxl: adds the qualitative filter's verdict")
    p.add_argument("--model-name", default="")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_table)

    p = subparsers.add_parser("qualitative-filter", help="the paper's qualitative filter (§5.1) on a layer set")
    p.add_argument("--model", required=True, help="hub id (no weights needed) or pipeline folder")
    p.add_argument("--family", required=True)
    p.add_argument("--set", dest="layer_set", default="pool", help="candidate layer set (default: the paper's pool)")
    p.add_argument("--n-up-levels", type=int, help="override the up-stage window (paper: 3)")
    p.add_argument("--out", required=True, help="CSV: one row per candidate with kept and reason")
    p.add_argument("--compare-out", help="CSV: counts and membership against the paper's Tables 4-6")
    p.add_argument("--set-out", help="layer-set YAML of the kept activations (a store of only these is what the "
                                     "label-scarce screens read; issue #19)")
    p.add_argument("--also-set", action="append", default=[],
                   help="with --set-out: add this layer set's activations the filter did not keep (e.g. Table 3's "
                        "paper-generic set, read from the same store)")
    p.set_defaults(func=cmd_filter)

    p = subparsers.add_parser("train-control-unet", help="train the Fig 15 control (conventional U-Net) on segmentation data")
    p.add_argument("--dataset-root", required=True, help="DDPM-seg-layout dataset (its train split is used)")
    p.add_argument("--out", required=True, help="model folder")
    p.add_argument("--image-size", type=int, default=default_of(ControlConfig, "image_size"))
    p.add_argument("--steps", type=int, default=default_of(ControlConfig, "steps"))
    p.add_argument("--seed", type=int, default=default_of(ControlConfig, "seed"))
    p.add_argument("--loss-csv", help="training curve CSV")
    # a tiny network: more threads only contend on the small CPU machines. The rule reserves this many cores
    # (workflow.properties.CONTROL_TRAIN_THREADS, not imported here: diffact.workflow takes seconds to import)
    p.set_defaults(func=cmd_train_control, threads=1)

    p = subparsers.add_parser("control-features", help="the control U-Net's feature store and noise share")
    p.add_argument("--model", required=True, help="control U-Net folder")
    p.add_argument("--dataset-root", required=True)
    p.add_argument("--images", type=int, default=0)
    p.add_argument("--draws", type=int, default=4)
    p.add_argument("--t", type=int, default=default_of(ExtractionSettings, "t"),
                   help="input noise level of the diffusion models (ᾱ_t)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--store-out", required=True)
    p.add_argument("--noise-out", required=True, help="CSV")
    p.set_defaults(func=cmd_control_features)

    p = subparsers.add_parser("properties-unavailable", help="status of the property figures (Figs 3-18) for a profile")
    p.add_argument("--model", nargs=4, action="append", default=[], metavar=("NAME", "FAMILY", "SOURCE", "BUILT"),
                   help="a profile model; BUILT is 'demo' or 'weights'")
    p.add_argument("--scenes", nargs="*", default=[])
    p.add_argument("--missing-scene", action="append", default=[], help="a configured scene with no dataset entry")
    p.add_argument("--control", action="store_true")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_unavailable)


def cmd_noise_share(args) -> int:
    from diffact.analysis.property_runs import diffusion_noise_share
    from diffact.extract.commands import extraction_settings_from_args, images_from_args
    from diffact.extract.layersets import resolve_layers_arg
    from diffact.models.loading import denoiser, load_pipeline
    from diffact.utils.errors import ConfigError
    from diffact.utils.io import write_csv

    if args.inversion != "none":
        raise ConfigError(f"noise-share --inversion {args.inversion}: the noise share measures how features vary "
                          "over noise draws, and an inversion has no noise draw; use --inversion none")
    settings = extraction_settings_from_args(args)
    images = images_from_args(args)
    if args.images:
        images = images[: args.images]
    pipe = load_pipeline(args.model, dtype=args.dtype, device=args.device, revision=args.revision,
                         variant=args.variant)
    layers = resolve_layers_arg(denoiser(pipe), args.family, args.layers)
    table = diffusion_noise_share(pipe, layers, images, settings, args.draws, args.batch_size,
                                  release_text_encoders=True)  # this command's own pipeline
    write_csv(args.out, table)
    log.info("wrote %s: noise share of %d activations over %d images × %d draws", args.out, len(table), len(images),
             args.draws)
    return 0


def cmd_property_maps(args) -> int:
    from diffact.utils.io import write_csv

    if args.store:
        if args.model:
            raise ConfigError("property-maps: --store and --model exclude each other (read a store, or extract from "
                              "the model without storing)")
        from diffact.analysis.plots import store_image_paths
        from diffact.analysis.property_runs import store_map_properties
        from diffact.extract.store import FeatureStore

        store = FeatureStore.open(args.store)
        image_ids = store.image_ids()[: args.images] if args.images else store.image_ids()
        recorder, paths = _figure_recorder(args, image_ids, lambda ids: store_image_paths(store, ids))
        table = store_map_properties(store, args.labels_root, args.images, args.pairs, args.seed,
                                     observe=recorder.observe if recorder else None)
    else:
        from diffact.analysis.property_runs import streamed_map_properties
        from diffact.extract.commands import images_from_args, require_stream_args, streamed_extraction_from_args

        require_stream_args(args, "property-maps")
        images = images_from_args(args)
        image_ids = [i for i, _ in images][: args.images] if args.images else [i for i, _ in images]
        recorder, paths = _figure_recorder(args, image_ids, lambda ids: dict(images))
        table = streamed_map_properties(streamed_extraction_from_args(args), args.labels_root, args.images,
                                        args.pairs, args.seed, observe=recorder.observe if recorder else None)
    write_csv(args.out, table)
    log.info("wrote %s: granularity/locality of %d activations", args.out, len(table))
    if recorder:
        recorder.save(args.figure_maps, paths, labels_root=str(args.labels_root) if args.labels_root else None)
        log.info("wrote %s: figure maps of %d image(s) × %d activations", args.figure_maps, len(recorder.image_ids),
                 len(recorder.layers))
    return 0


def _figure_recorder(args, image_ids, paths_of):
    """The figure-maps recorder of ``--figure-maps`` (the first ``--figure-images`` images the table reads) and
    their image files; (None, None) without it."""
    if not args.figure_maps:
        return None, None
    from diffact.analysis.property_runs import segmentation_labels
    from diffact.viz.figure_maps import FigureMapRecorder

    if args.figure_images < 1:
        raise ConfigError(f"property-maps --figure-images must be ≥ 1, got {args.figure_images}")
    shown = list(image_ids[: args.figure_images])
    labels_of = segmentation_labels(args.labels_root)[0] if args.labels_root else None
    return FigureMapRecorder(shown, labels_of), paths_of(shown)


def cmd_table(args) -> int:
    import pandas as pd

    from diffact.analysis.property_runs import merge_property_tables
    from diffact.utils.io import write_csv

    noise = {k: pd.read_csv(v) for k, v in _pairs(args.noise, "--noise").items()}
    maps = {k: pd.read_csv(v) for k, v in _pairs(args.maps, "--maps").items()}
    pck = pd.read_csv(args.pck) if args.pck else None
    table = merge_property_tables(noise, maps, pck, args.family, args.model_name)
    write_csv(args.out, table)
    return 0


def cmd_filter(args) -> int:
    import pandas as pd

    from diffact.analysis.filter import filter_report
    from diffact.models.configs import listing_denoiser
    import yaml

    from diffact.extract.layersets import resolve_set
    from diffact.utils.io import write_csv, write_text

    unet, _, _ = listing_denoiser(args.model)
    candidates = resolve_set(unet, args.family, args.layer_set)
    report = pd.DataFrame(filter_report(candidates, args.family, args.n_up_levels))
    report.insert(0, "model", args.model)
    write_csv(args.out, report)
    kept = report[report.kept].layer.tolist()
    log.info("%s %s: %d candidates → %d kept", args.model, args.layer_set, len(report), len(kept))
    if args.compare_out:
        write_csv(args.compare_out, pd.DataFrame([compare_with_paper(args.model, args.family, len(report), kept)]))
    if args.set_out:
        spec = filtered_set_spec(kept, args, [(name, resolve_set(unet, args.family, name)) for name in args.also_set])
        write_text(args.set_out, yaml.safe_dump(spec, sort_keys=False, allow_unicode=True, width=200))
        log.info("wrote %s: %d activations", args.set_out, len(spec["layers"]))
    elif args.also_set:
        from diffact.utils.errors import ConfigError

        raise ConfigError("--also-set adds to the --set-out file: give --set-out")
    return 0


def filtered_set_spec(kept: list[str], args, also: list[tuple[str, list[str]]]) -> dict:
    """The layer-set file (config/layers format) of the filter's kept activations, in forward order, then the
    activations of each ``--also-set`` the filter did not keep, in that set's order."""
    layers = list(kept)
    for _, names in also:
        layers += [name for name in names if name not in layers]
    added = f"; plus {', '.join(name for name, _ in also)}" if also else ""
    return {"name": "filtered", "family": args.family,
            "description": f"the qualitative filter's (§5.1) kept activations of {args.layer_set}{added}",
            "source": f"diffact qualitative-filter --model {args.model} --set {args.layer_set}",
            "layers": layers}


def compare_with_paper(model: str, family: str, n_candidates: int, kept: list[str]) -> dict:
    """Counts and membership of a filtered pool against Tables 4–5 (SDXL) or Table 6 (SD1.5)."""
    from diffact.data.reference import paper_tables_4_6

    tables = paper_tables_4_6()
    which = {"sdxl": [4, 5], "sd15": [6]}.get(family, [])
    paper = tables[tables.table.isin(which)].activation_id.tolist()
    return {"model": model, "family": family, "candidates": n_candidates, "kept": len(kept),
            "paper_tables": "+".join(map(str, which)), "paper_kept": len(paper),
            "in_both": len(set(kept) & set(paper)), "only_ours": len(set(kept) - set(paper)),
            "only_paper": len(set(paper) - set(kept)), "identical": kept == paper}


def cmd_train_control(args) -> int:
    import pandas as pd

    from diffact.data.ddpmseg import open_ddpmseg
    from diffact.models.control_unet import ControlConfig, load_segmentation_arrays, save_control, train_control
    from diffact.utils.io import write_csv
    dataset = open_ddpmseg(args.dataset_root)
    config = ControlConfig(num_classes=dataset.num_classes, image_size=args.image_size, steps=args.steps, seed=args.seed)
    config.validate()
    images, labels = load_segmentation_arrays(dataset.images("train"), args.image_size)
    model, curve = train_control(images, labels, config)
    save_control(model, args.out, {"trained_on": str(args.dataset_root), "final_loss": curve[-1]["loss"] if curve else None})
    if args.loss_csv:
        write_csv(args.loss_csv, pd.DataFrame(curve))
    return 0


def cmd_control_features(args) -> int:
    from diffact.analysis.property_runs import control_features
    from diffact.data.registry import dataset_images
    from diffact.models.control_unet import load_control
    from diffact.utils.io import write_csv

    model = load_control(args.model)
    images = dataset_images("ddpmseg", args.dataset_root)
    if args.images:
        images = images[: args.images]
    settings = {"dataset": {"kind": "ddpmseg", "root": args.dataset_root}, "images": [i for i, _ in images]}
    table = control_features(model, images, args.store_out, args.t, args.draws, args.seed, settings=settings)
    write_csv(args.noise_out, table)
    return 0


def cmd_unavailable(args) -> int:
    import pandas as pd

    from diffact.analysis.availability import ModelInfo, figure_status
    from diffact.utils.io import write_csv

    models = [ModelInfo(name, family, source, built == "demo") for name, family, source, built in args.model]
    rows = figure_status(models, args.scenes, args.control)
    rows += [{"figure": "scene " + scene, "content": "labelled scene for all property figures", "status": "unavailable",
              "models": "", "outputs": "", "reason": f"properties.scenes names {scene!r} but config/datasets has no such "
              "entry"} for scene in args.missing_scene]
    write_csv(args.out, pd.DataFrame(rows))
    return 0
