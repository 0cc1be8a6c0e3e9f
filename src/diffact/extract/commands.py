"""CLI: ``diffact layers`` (the catalog of a model), ``diffact extract`` (features into a store, optionally
one shard of the images), ``diffact extract-group`` (several stores of one model with one model load) and
``diffact extract-merge`` (finalise a store that shard jobs filled)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from diffact.utils.errors import ConfigError
from diffact.utils.threads import torch_threads

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    p = subparsers.add_parser("layers", help="list a model's activations: name, kind, channels, spatial size")
    p.add_argument("--model", required=True,
                   help="hub id (known ids need no download) or a pipeline folder (U-Net or PixArt/SD3/Flux DiT)")
    p.add_argument("--resolution", type=int, help="image side in pixels (default: the paper's size / the model's)")
    p.add_argument("--maps", action="store_true", help="include self/cross-attention maps")
    p.add_argument("--set", dest="layer_set", help="only the named layer set (e.g. practical) for --family")
    p.add_argument("--family", help="layer-set family (default: inferred from the denoiser)")
    p.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    p.set_defaults(func=cmd_layers)

    p = subparsers.add_parser("extract", help="extract activations of a dataset into a feature store")
    add_store_args(p)
    p.add_argument("--shard", help="I/N: extract only shard I (1-based) of N of the images (whole batches dealt "
                                   "round robin) into --out and do not finalise; `diffact extract-merge` does that "
                                   "once every shard has run")
    p.add_argument("--receipt", help="with --shard: JSON file written when the shard is done (a rule's output)")
    p.set_defaults(func=cmd_extract)

    p = subparsers.add_parser("extract-group", help="write several feature stores of one model with one model load")
    p.add_argument("--store", action="append", required=True, metavar="ARGS",
                   help="one store: the arguments of `diffact extract` (--out included, no --shard) as one quoted "
                        "string; repeat per store. Every store names the same model load (model, revision, "
                        "variant, family, dtype, device, torch threads); each is written as `diffact extract` "
                        "alone writes it")
    p.set_defaults(func=cmd_extract_group)

    p = subparsers.add_parser("extract-merge", help="finalise a feature store filled by `extract --shard` jobs")
    add_extraction_args(p)
    p.add_argument("--out", required=True, help="the store folder the shard jobs wrote")
    p.add_argument("--check-key", action="store_true", help="fail unless the folder name ends with the settings key")
    p.add_argument("--shards", type=int, help="number of shards (names the shard of each missing image)")
    p.set_defaults(func=cmd_extract_merge)


def add_store_args(p) -> None:
    """The arguments of one store of ``diffact extract`` (also each ``--store`` of ``diffact extract-group``)."""
    add_extraction_args(p)
    p.add_argument("--out", required=True, help="store folder; its name must end with the settings key when --check-key")
    p.add_argument("--check-key", action="store_true", help="fail unless the folder name ends with the settings key")
    p.add_argument("--no-early-exit", action="store_true")


def dataset_policy_from_args(args) -> dict:
    """The SPair subset policy of :func:`add_extraction_args` arguments (nothing for other dataset kinds)."""
    from diffact.data.spair import subset_options_from_args

    return subset_options_from_args(args) if args.dataset_kind == "spair" else {}


def add_extraction_args(p, required: bool = True) -> None:
    """The arguments that define an extraction (model, layers, dataset, settings); shared by every command
    that extracts, so rules can pass ``workflow.extract_args`` to any of them. ``required=False``: model, family,
    layers and dataset may be left out (``pck-screen`` and ``property-maps`` take them only when they extract)."""
    from diffact.data.spair import add_subset_policy_args
    from diffact.extract.settings import ExtractionSettings
    from diffact.utils.args import default_of, positive_int

    def setting(name):  # the defaults are ExtractionSettings' (the paper's), written there once
        return default_of(ExtractionSettings, name)

    p.add_argument("--model", required=required, help="hub id or pipeline folder (loaded with from_pretrained)")
    p.add_argument("--revision")
    p.add_argument("--variant", help="weight-file variant to load, e.g. fp16 (the hub's *.fp16.safetensors)")
    p.add_argument("--torch-threads", dest="threads", type=positive_int, metavar="N",
                   help="the same as --threads; the workflow fixes it (extraction.torch_threads) because the CPU "
                        "kernels' float sums depend on the thread count (docs/determinism.md)")
    p.add_argument("--family", required=required,
                   help="model family (config/layers/<family>/): sd15, sdxl, pixart, sd3 or flux")
    p.add_argument("--layers", required=required, help="a layer-set name or comma-separated layer names")
    p.add_argument("--dataset-kind", required=required, choices=["spair", "ddpmseg", "folder"])
    p.add_argument("--dataset-root", required=required)
    p.add_argument("--split")
    p.add_argument("--subset")
    add_subset_policy_args(p)
    p.add_argument("--t", type=int, default=setting("t"))
    p.add_argument("--prompt", default=setting("prompt"))
    p.add_argument("--image-size", type=int, default=setting("image_size"))
    p.add_argument("--noise-seed", type=int, default=setting("noise_seed"))
    p.add_argument("--ensemble", type=int, default=setting("ensemble"))
    p.add_argument("--vae-mode", default=setting("vae_mode"), choices=["sample", "mean"])
    p.add_argument("--resize", default=setting("resize"), choices=["square", "aspect"],
                   help="square: stretch to S×S (paper); aspect: long side to S, centred on a padded S×S canvas")
    p.add_argument("--inversion", default=setting("inversion"), choices=["none", "ddim"],
                   help="none: forward noise (paper); ddim: deterministic DDIM inversion of the clean latent to t")
    p.add_argument("--inversion-steps", type=int, default=setting("inversion_steps"), help="DDIM inversion steps up to t (--inversion ddim)")
    p.add_argument("--dtype", default=setting("dtype"),
                   help="float32 | float16 | bfloat16 | auto (the fastest this device runs natively, recorded resolved)")
    p.add_argument("--storage-dtype", default="float32", choices=["float32", "float16"])
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=1)


def cmd_layers(args) -> int:
    from diffact.api import catalog_table

    rows, resolution, latent = catalog_table(args.model, maps=args.maps, resolution=args.resolution,
                                             layer_set=args.layer_set, family=args.family)
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    width = max(len(r["name"]) for r in rows)
    for row in rows:
        print(f"{row['name']:<{width}}  {row['kind']:<16} {row['channels']:>6}  {row['height']}x{row['width']}")
    print(f"# {len(rows)} activations, {sum(r['channels'] for r in rows)} channels, image {resolution}px, "
          f"latent {latent}")
    return 0


def extraction_settings_from_args(args):
    """The :class:`ExtractionSettings` of parsed :func:`add_extraction_args` arguments."""
    from diffact.extract.settings import ExtractionSettings

    return ExtractionSettings(t=args.t, prompt=args.prompt, image_size=args.image_size, noise_seed=args.noise_seed,
                              ensemble=args.ensemble, vae_mode=args.vae_mode, dtype=args.dtype, resize=args.resize,
                              inversion=args.inversion, inversion_steps=args.inversion_steps)


def images_from_args(args) -> list:
    """[(image id, path)] of the dataset the :func:`add_extraction_args` arguments name, in store order."""
    from diffact.data.registry import dataset_images

    return dataset_images(args.dataset_kind, args.dataset_root, args.split, args.subset,
                          **dataset_policy_from_args(args))


STREAM_FLAGS = ("--model", "--family", "--layers", "--dataset-kind", "--dataset-root")


def require_stream_args(args, command: str, flags=STREAM_FLAGS) -> None:
    """A command that reads ``--store`` or streams from the model (``pck-screen``, ``property-maps``, ``figure-maps``):
    without a store, the ``diffact extract`` arguments that describe the features must all be given."""
    missing = [flag for flag in flags if not getattr(args, flag[2:].replace("-", "_"))]
    if missing:
        raise ConfigError(f"{command}: give --store, or stream from the model with the arguments of diffact extract "
                          f"(missing {', '.join(missing)})")


def model_from_args(args) -> dict:
    """The model entry (source, family, revision, variant) that ``diffact extract``'s arguments name."""
    return {"source": args.model, "family": args.family, "revision": args.revision, "variant": args.variant}


def streamed_extraction_from_args(args):
    """The features ``diffact extract`` with these arguments would store, streamed instead
    (:func:`diffact.streamed.open_extraction`; ``pck-screen`` and ``property-maps`` without ``--store``)."""
    from diffact.streamed import open_extraction

    images = images_from_args(args)
    return open_extraction(model_from_args(args), args.layers, extraction_settings_from_args(args), images, args.batch_size,
                           args.storage_dtype, device=args.device)


def _store_settings_from_args(args) -> tuple[object, dict, list]:
    """(extraction settings, store settings, dataset images) of the arguments; checks the folder's key."""
    from diffact.extract.run import store_settings
    from diffact.extract.store import settings_key

    extraction = extraction_settings_from_args(args)
    dataset = {"kind": args.dataset_kind, "root": args.dataset_root, "split": args.split, "subset": args.subset}
    settings = store_settings(dataset=dataset, model={"source": args.model, "revision": args.revision},
                              family=args.family, layer_set=args.layers, extraction=extraction,
                              storage_dtype=args.storage_dtype)
    key = settings_key(settings)
    if args.check_key and not Path(args.out).name.endswith(key):
        raise ConfigError(f"--out {args.out} does not end with the settings key {key}")
    return extraction, settings, images_from_args(args)


def cmd_extract(args) -> int:
    from diffact.api import FeatureExtractor
    from diffact.extract.run import extract_to_store, parse_shard, shard_images
    from diffact.utils import memory
    from diffact.utils.io import write_json

    shard = parse_shard(args.shard) if args.shard else None
    if args.receipt and not shard:
        raise ConfigError("--receipt is written by shard jobs only; add --shard I/N")
    extraction, settings, images = _store_settings_from_args(args)
    mine = shard_images(images, shard, args.batch_size) if shard else images
    if shard and not mine:
        # More shards than batches: this one has nothing to do, so it does not load a model (minutes at full size).
        log.info("shard %s of %d images has no batch: nothing to extract, model not loaded", args.shard, len(images))
        if args.receipt:
            write_json(args.receipt, {"store": str(Path(args.out)), "shard": args.shard, "image_ids": []}, sort_keys=False)
        return 0
    # The Python API's extractor (diffact.api), so the CLI and a notebook extract the same way.
    fx = FeatureExtractor.from_pretrained(args.model, args.layers, family=args.family, revision=args.revision,
                                          variant=args.variant, device=args.device, early_exit=not args.no_early_exit,
                                          release_text_encoders=True, **extraction.as_dict())
    # From here on every image needs the same memory again: keep what is freed instead of refaulting it
    # (diffact.utils.memory; set after the model load, so the text encoders' memory is still given back).
    memory.reuse_freed_memory()
    store = extract_to_store(fx.pipe, fx.layers, images, args.out, settings, extraction, batch_size=args.batch_size,
                             storage_dtype=args.storage_dtype, shard=shard, extractor=fx.extractor)
    layers = fx.layers
    written = [i for i, _ in mine]
    if args.receipt:
        write_json(args.receipt, {"store": str(store.root), "shard": args.shard, "image_ids": written}, sort_keys=False)
    log.info("wrote %d shards × %d layers to %s (key %s)%s", len(written), len(layers), store.root, store.key,
             f", shard {args.shard}" if shard else "")
    return 0


# What one model load serves: every store of an extract-group names the same values of these arguments (the
# pipeline load_pipeline builds and torch's threads, on which the features' bits depend); the rest is per store.
MODEL_LOAD_ARGS = ("model", "revision", "variant", "family", "dtype", "device", "threads")


class _StoreArgsParser(argparse.ArgumentParser):
    """The ``diffact extract`` arguments of one ``--store``: a bad one is a ConfigError, not an exit from argparse."""

    def error(self, message):
        raise ConfigError(message)


def group_store_args(texts: list[str]) -> list:
    """The parsed arguments of each ``extract-group --store`` (``diffact extract``'s, without --shard); they must
    share one model load (:data:`MODEL_LOAD_ARGS`) and write distinct folders."""
    import shlex

    parser = _StoreArgsParser(prog="diffact extract-group --store", add_help=False)
    add_store_args(parser)
    stores = []
    for text in texts:
        try:
            stores.append(parser.parse_args(shlex.split(text)))
        except (ConfigError, ValueError) as err:
            raise ConfigError(f"extract-group --store {text!r}: {err} (expected the arguments of diffact extract, "
                              "--out included, no --shard)") from None
    first = stores[0]
    for store in stores[1:]:
        differ = [name for name in MODEL_LOAD_ARGS if getattr(store, name) != getattr(first, name)]
        if differ:
            raise ConfigError(f"extract-group: the store {store.out} loads its model otherwise than {first.out} "
                              f"({', '.join(f'--{n} {getattr(store, n)!r} vs {getattr(first, n)!r}' for n in differ)}); "
                              "one group shares one model load")
    outs = [Path(store.out) for store in stores]
    repeated = sorted({str(out) for out in outs if outs.count(out) > 1})
    if repeated:
        raise ConfigError(f"extract-group: the store {repeated[0]} is given twice")
    return stores


def cmd_extract_group(args) -> int:
    """Several stores of one model with one model load, each written as ``diffact extract`` alone writes it
    (the same extractor per store, :func:`extract_to_store`, the same resume). A store whose every image already
    has a shard of this code needs no model: it is finalised as it is (skipped when ``complete.json`` is there);
    when no store needs the model, it is not loaded."""
    from diffact.api import FeatureExtractor
    from diffact.extract.run import extract_to_store, extraction_code, store_is_current
    from diffact.extract.store import FeatureStore
    from diffact.models.loading import load_pipeline, release_text_encoders
    from diffact.utils import memory

    stores = group_store_args(args.store)
    threads = stores[0].threads
    if threads and args.threads and threads != args.threads:
        raise ConfigError(f"extract-group: --threads {args.threads} but the stores pin --torch-threads {threads}")
    # the stores' pinned threads (diffact extract gets them from --torch-threads through the CLI); with the
    # CLI's --threads, leave torch as the CLI set it
    with torch_threads(threads if not args.threads else None):
        code = extraction_code()
        planned = [(store, *_store_settings_from_args(store)) for store in stores]  # every key checked first
        pending = []
        for store, extraction, settings, images in planned:
            if not store_is_current(store.out, settings, [i for i, _ in images], code):
                pending.append((store, extraction, settings, images))
            elif (Path(store.out) / "complete.json").is_file():
                log.info("%s: complete, skipped", store.out)
            else:
                FeatureStore.open(store.out).finalize([i for i, _ in images])
                log.info("%s: every image already extracted by this code; finalised without the model", store.out)
        if not pending:
            log.info("extract-group: %d stores, none to extract: model not loaded", len(stores))
            return 0
        first = pending[0][0]
        pipe = load_pipeline(first.model, dtype=first.dtype, device=first.device, revision=first.revision,
                             variant=first.variant, family=first.family)
        # Every extractor encodes its prompt when built; then the text encoders go, as diffact extract drops them.
        extractors = [FeatureExtractor(pipe, store.layers, extraction, family=store.family,
                                       early_exit=not store.no_early_exit)
                      for store, extraction, _, _ in pending]
        release_text_encoders(pipe)
        memory.reuse_freed_memory()  # as diffact extract: after the model load
        for n, ((store, extraction, settings, images), fx) in enumerate(zip(pending, extractors), start=1):
            written = extract_to_store(pipe, fx.layers, images, store.out, settings, extraction,
                                       batch_size=store.batch_size, storage_dtype=store.storage_dtype,
                                       code=code, extractor=fx.extractor)
            log.info("store %d/%d: %d images × %d layers in %s (key %s)", n, len(pending), len(images),
                     len(fx.layers), written.root, written.key)
    log.info("extract-group: %d stores, %d extracted with one model load", len(stores), len(pending))
    return 0


def cmd_extract_merge(args) -> int:
    from diffact.extract.run import merge_shards

    _, settings, images = _store_settings_from_args(args)
    store = merge_shards(args.out, images, settings, shards=args.shards, batch_size=args.batch_size)
    log.info("%s complete: %d images × %d layers (key %s)", store.root, len(images), len(store.layers), store.key)
    return 0
