"""CLI: ``diffact layers`` (the catalog of a model), ``diffact extract`` (features into a store, optionally
one shard of the images) and ``diffact extract-merge`` (finalise a store that shard jobs filled)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from diffact.utils.errors import ConfigError, ModelError

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
    add_extraction_args(p)
    p.add_argument("--out", required=True, help="store folder; its name must end with the settings key when --check-key")
    p.add_argument("--check-key", action="store_true", help="fail unless the folder name ends with the settings key")
    p.add_argument("--no-early-exit", action="store_true")
    p.add_argument("--shard", help="I/N: extract only shard I (1-based) of N of the images (whole batches dealt "
                                   "round robin) into --out and do not finalise; `diffact extract-merge` does that "
                                   "once every shard has run")
    p.add_argument("--receipt", help="with --shard: JSON file written when the shard is done (a rule's output)")
    p.set_defaults(func=cmd_extract)

    p = subparsers.add_parser("extract-merge", help="finalise a feature store filled by `extract --shard` jobs")
    add_extraction_args(p)
    p.add_argument("--out", required=True, help="the store folder the shard jobs wrote")
    p.add_argument("--check-key", action="store_true", help="fail unless the folder name ends with the settings key")
    p.add_argument("--shards", type=int, help="number of shards (names the shard of each missing image)")
    p.set_defaults(func=cmd_extract_merge)


def _dit_text_tokens(folder: Path) -> int:
    """Text tokens a DiT pipeline feeds its transformer by default (the cross-map width): the
    ``max_sequence_length`` default of its ``encode_prompt`` (PixArt-Σ 300, PixArt-α 120, Flux 512), plus
    the CLIP tokens SD3 concatenates in front of its T5 tokens (77 + 256)."""
    import inspect

    import diffusers

    index = json.loads((folder / "model_index.json").read_text()) if (folder / "model_index.json").is_file() else {}
    pipeline = getattr(diffusers, index.get("_class_name", ""), None)
    param = inspect.signature(pipeline.encode_prompt).parameters.get("max_sequence_length") if pipeline else None
    tokens = param.default if param is not None and isinstance(param.default, int) else 77
    if "text_encoder_3" in index:  # SD3: [CLIP-L ⊕ CLIP-G padded] tokens, then T5 tokens
        tok_cfg = folder / "tokenizer" / "tokenizer_config.json"
        tokens += int(json.loads(tok_cfg.read_text()).get("model_max_length", 77)) if tok_cfg.is_file() else 77
    return tokens


def _dit_for_listing(folder: Path):
    """A supported DiT transformer on the meta device from a pipeline folder's transformer/config.json."""
    import torch

    import diffusers

    from diffact.extract.catalog_dit import DIT_WALKERS

    config = json.loads((folder / "transformer" / "config.json").read_text())
    name = config.get("_class_name", "")
    if name not in DIT_WALKERS:
        raise ModelError(f"{folder}: unsupported transformer class {name or '?'} "
                         f"(supported: UNet2DConditionModel, {', '.join(DIT_WALKERS)})")
    cls = getattr(diffusers, name)
    with torch.device("meta"):
        return cls.from_config(cls.load_config(folder, subfolder="transformer"))


def dataset_policy_from_args(args) -> dict:
    """The SPair subset policy of :func:`add_extraction_args` arguments (nothing for other dataset kinds)."""
    from diffact.data.spair import subset_options_from_args

    return subset_options_from_args(args) if args.dataset_kind == "spair" else {}


def add_extraction_args(p) -> None:
    """The arguments that define an extraction (model, layers, dataset, settings); shared by every command
    that extracts, so rules can pass ``workflow.extract_args`` to any of them."""
    from diffact.data.spair import add_subset_policy_args

    p.add_argument("--model", required=True, help="hub id or pipeline folder (loaded with from_pretrained)")
    p.add_argument("--revision")
    p.add_argument("--variant", help="weight-file variant to load, e.g. fp16 (the hub's *.fp16.safetensors)")
    p.add_argument("--torch-threads", type=int, default=None,
                   help="CPU threads of torch; fixed by the workflow (extraction.torch_threads) because the CPU "
                        "kernels' float sums depend on the thread count (docs/determinism.md)")
    p.add_argument("--family", required=True, help="layer-set family: sd15 or sdxl")
    p.add_argument("--layers", required=True, help="a layer-set name or comma-separated layer names")
    p.add_argument("--dataset-kind", required=True, choices=["spair", "ddpmseg", "folder"])
    p.add_argument("--dataset-root", required=True)
    p.add_argument("--split")
    p.add_argument("--subset")
    add_subset_policy_args(p)
    p.add_argument("--t", type=int, default=50)
    p.add_argument("--prompt", default="")
    p.add_argument("--image-size", type=int, default=512)
    p.add_argument("--noise-seed", type=int, default=0)
    p.add_argument("--ensemble", type=int, default=1)
    p.add_argument("--vae-mode", default="sample", choices=["sample", "mean"])
    p.add_argument("--resize", default="square", choices=["square", "aspect"],
                   help="square: stretch to S×S (paper); aspect: long side to S, centred on a padded S×S canvas")
    p.add_argument("--inversion", default="none", choices=["none", "ddim"],
                   help="none: forward noise (paper); ddim: deterministic DDIM inversion of the clean latent to t")
    p.add_argument("--inversion-steps", type=int, default=10, help="DDIM inversion steps up to t (--inversion ddim)")
    p.add_argument("--dtype", default="float32",
                   help="float32 | float16 | bfloat16 | auto (the fastest this device runs natively, recorded resolved)")
    p.add_argument("--storage-dtype", default="float32", choices=["float32", "float16"])
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=1)


def _unet_for_listing(model: str):
    """The denoiser on the meta device for a known hub id or a local pipeline folder (no weights are read):
    a U-Net, or a supported DiT (PixArt, SD3, Flux) for a folder with transformer/config.json."""
    from diffusers import UNet2DConditionModel

    from diffact.models.configs import build_unet, reference_unet_config

    config = None if Path(model).exists() else reference_unet_config(model)
    text_tokens, vae_factor = 77, 8
    if config is None:
        folder = Path(model)
        dit = not (folder / "unet" / "config.json").is_file() and (folder / "transformer" / "config.json").is_file()
        if not dit and not (folder / "unet" / "config.json").is_file():
            raise ModelError(f"{model}: neither a known hub id nor a pipeline folder with unet/config.json "
                             "or transformer/config.json")
        vae_cfg = folder / "vae" / "config.json"
        if vae_cfg.is_file():
            vae_factor = 2 ** (len(json.loads(vae_cfg.read_text())["block_out_channels"]) - 1)
        if dit:
            return _dit_for_listing(folder), _dit_text_tokens(folder), vae_factor
        config = UNet2DConditionModel.load_config(folder, subfolder="unet")
        tok_cfg = folder / "tokenizer" / "tokenizer_config.json"
        if tok_cfg.is_file():
            text_tokens = int(json.loads(tok_cfg.read_text()).get("model_max_length", 77))
    return build_unet(config), text_tokens, vae_factor


def cmd_layers(args) -> int:
    from diffact.extract.catalog import MAP_KINDS
    from diffact.extract.catalog_dit import walk_model
    from diffact.extract.layersets import resolve_set
    from diffact.models.loading import unet_family

    unet, text_tokens, vae_factor = _unet_for_listing(args.model)
    # FluxTransformer2DModel has no sample_size; FluxPipeline's default is 128 latents (1024 px).
    resolution = args.resolution or unet.config.get("sample_size", 128) * vae_factor
    if resolution % vae_factor:
        raise ConfigError(f"--resolution {resolution} is not a multiple of the VAE factor {vae_factor}")
    latent = (resolution // vae_factor,) * 2
    entries = [a for a in walk_model(unet) if args.maps or a.kind not in MAP_KINDS]
    patch = max((a.patch for a in entries), default=1)
    if latent[0] % patch:
        raise ConfigError(f"--resolution {resolution}: latent {latent[0]} is not a multiple of the patch size {patch}")
    if args.layer_set:
        keep = set(resolve_set(unet, args.family or unet_family(unet), args.layer_set))
        entries = [a for a in entries if a.name in keep or (args.maps and a.kind in MAP_KINDS and a.name in keep)]
    rows = [a.as_row(latent, text_tokens) for a in entries]
    if args.json:
        for row in rows:
            print(json.dumps({k: row[k] for k in ("name", "kind", "channels", "height", "width", "module")}))
        return 0
    width = max(len(r["name"]) for r in rows)
    for row in rows:
        print(f"{row['name']:<{width}}  {row['kind']:<16} {row['channels']:>6}  {row['height']}x{row['width']}")
    print(f"# {len(rows)} activations, {sum(r['channels'] for r in rows)} channels, image {resolution}px, latent {latent[0]}")
    return 0


def extraction_settings_from_args(args):
    """The :class:`ExtractionSettings` of parsed :func:`add_extraction_args` arguments."""
    from diffact.extract.pipeline import ExtractionSettings

    return ExtractionSettings(t=args.t, prompt=args.prompt, image_size=args.image_size, noise_seed=args.noise_seed,
                              ensemble=args.ensemble, vae_mode=args.vae_mode, dtype=args.dtype, resize=args.resize,
                              inversion=args.inversion, inversion_steps=args.inversion_steps)


def _store_settings_from_args(args) -> tuple[object, dict, list]:
    """(extraction settings, store settings, dataset images) of the arguments; checks the folder's key."""
    from diffact.data.registry import dataset_images
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
    images = dataset_images(args.dataset_kind, args.dataset_root, args.split, args.subset,
                            **dataset_policy_from_args(args))
    return extraction, settings, images


def set_torch_threads(threads: int | None) -> None:
    """Pin torch's CPU threads (None: leave torch's default). Same config, same thread count, same bits."""
    if threads is None:
        return
    if threads < 1:
        raise ConfigError(f"--torch-threads must be ≥ 1, got {threads}")
    import torch

    torch.set_num_threads(threads)


def cmd_extract(args) -> int:
    from diffact.extract.layersets import resolve_layers_arg
    from diffact.extract.run import extract_to_store, parse_shard, shard_images
    from diffact.models.loading import denoiser, load_pipeline
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
    set_torch_threads(args.torch_threads)
    pipe = load_pipeline(args.model, dtype=args.dtype, device=args.device, revision=args.revision,
                         variant=args.variant)
    layers = resolve_layers_arg(denoiser(pipe), args.family, args.layers)
    store = extract_to_store(pipe, layers, images, args.out, settings, extraction, batch_size=args.batch_size,
                             storage_dtype=args.storage_dtype, early_exit=not args.no_early_exit, shard=shard,
                             release_text_encoders=True)  # this command's own pipeline
    written = [i for i, _ in mine]
    if args.receipt:
        write_json(args.receipt, {"store": str(store.root), "shard": args.shard, "image_ids": written}, sort_keys=False)
    log.info("wrote %d shards × %d layers to %s (key %s)%s", len(written), len(layers), store.root, store.key,
             f", shard {args.shard}" if shard else "")
    return 0


def cmd_extract_merge(args) -> int:
    from diffact.extract.run import merge_shards

    _, settings, images = _store_settings_from_args(args)
    store = merge_shards(args.out, images, settings, shards=args.shards, batch_size=args.batch_size)
    log.info("%s complete: %d images × %d layers (key %s)", store.root, len(images), len(store.layers), store.key)
    return 0
