"""Per-unit costs of the paper run (`diffact budget` reads them): the paper's four U-Nets at the paper's image size.

For each model (SD1.5 and SD2.1 at 512 px = 64² latents, SDXL and Playground v2 at 1024 px = 128² latents; U-Net
configs from src/diffact/models/configs.py, Playground v2 = SDXL's architecture), each variant in its own subprocess
so that its peak RSS (getrusage ru_maxrss of the child) is its own:

  forward        the U-Net alone, batch 1: build seconds, seconds per forward pass (median of --repeats after one
                 warm-up), peak RSS (and the CUDA allocator's peak on a GPU)
  store:<set>    one image through the real extractor into a FeatureStore (diffact.extract.run.extract_to_store,
                 fp16 storage as the paper profile): the shard's file size, its tensor bytes, peak RSS, seconds

Bytes per stored image of every layer set of the family (config/layers/<family>/*.yaml) are also computed from the
catalog's shapes on the meta device (diffact.budget.stored_shapes); every store write checks that the computation
agrees with the bytes really written.

By default the U-Net is built from its config with seeded random weights (no download), and the store variant puts
it in a pipeline with minimal stand-in VAE (factor 8) and text encoders of the right widths: the U-Net, hence every
stored shape, is exact; the RSS of a store write then lacks the real VAE and text encoders. With --hub-cache DIR the
pipeline is loaded with diffact.models.loading.load_pipeline from that Hugging Face cache instead (e.g. the
full-size random-weight pipelines of `diffact make-standin-models`).

The full run (the lead runs it at a quiet moment; SDXL/PGv2 need ~11 GB of RAM and about a minute per pass on CPU):

    python benchmarks/bench_paper_scale.py                        # all four models, fp32, CPU, pool store write
    python benchmarks/bench_paper_scale.py --models sd15 --quick   # SD1.5 at 256 px, every set written: a check

Results are merged into --out (default benchmarks/results/paper_scale.json, one entry per model; --fresh starts
over) and a Markdown table beside it (paper_scale.md).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "paper_scale.json"
# name → (hub id, layer-set family, paper image size). demo-* are the demo's tiny architectures (for tests).
MODELS = {
    "sd15": ("stable-diffusion-v1-5/stable-diffusion-v1-5", "sd15", 512),
    "sd21": ("stabilityai/stable-diffusion-2-1-base", "sd15", 512),
    "sdxl": ("stabilityai/stable-diffusion-xl-base-1.0", "sdxl", 1024),
    "pgv2": ("playgroundai/playground-v2-1024px-aesthetic", "sdxl", 1024),
    "demo-sd15": ("demo:sd15", "sd15", 64),
    "demo-sdxl": ("demo:sdxl", "sdxl", 64),
}
PAPER_MODELS = ("sd15", "sd21", "sdxl", "pgv2")
QUICK_IMAGE_SIZE = 256
# The layer sets the paper profile stores (config/paper.yaml); `--store-sets all` writes each of them.
PAPER_SETS = ("legacy", "practical", "amalgamation", "pool", "figure")
PROMPT = "a photo"
TIMESTEP = 50
SEED = 0


# ---- models ------------------------------------------------------------------------------------------------------

def unet_config(name: str) -> dict:
    source = MODELS[name][0]
    if source.startswith("demo:"):
        from diffact.models.demo import unet_config as demo_config

        return demo_config(source.split(":", 1)[1])
    from diffact.models.configs import reference_unet_config

    return reference_unet_config(source)


def vae_factor(name: str) -> int:
    if MODELS[name][0].startswith("demo:"):
        from diffact.models.demo import VAE_DOWNSAMPLING_FACTOR

        return VAE_DOWNSAMPLING_FACTOR
    return 8


def text_widths(config: dict) -> tuple[int, int | None]:
    """(hidden size of the first text encoder, pooled width of the second or None) a U-Net config expects:
    SDXL concatenates both encoders' states (768 + 1280 = 2048) and adds the pooled 1280 + 6 size ids."""
    cross = int(config["cross_attention_dim"])
    if config.get("addition_embed_type") == "text_time":
        pooled = int(config["projection_class_embeddings_input_dim"]) - 6 * int(config["addition_time_embed_dim"])
        return cross - pooled, pooled
    return cross, None


def build_unet(name: str, device: str):
    """The U-Net from its config with seeded random weights (the same bytes every run)."""
    import torch
    from diffusers import UNet2DConditionModel

    from diffact.models.demo import seeded_init

    with seeded_init(SEED, name, "unet"), torch.device(device):
        return UNet2DConditionModel.from_config(unet_config(name)).eval()


def standin_pipeline(name: str):
    """A diffusers pipeline around the exact U-Net with a minimal stand-in VAE (16 channels, the model's
    downsampling factor) and one-layer text encoders of the widths the U-Net expects (the VAE and the text
    encoders only feed the U-Net: they change no stored shape)."""
    from diffusers import AutoencoderKL, StableDiffusionPipeline, StableDiffusionXLPipeline
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from diffact.models import demo
    from diffact.models.tokenizer import build_clip_tokenizer, special_token_ids, vocab_size

    config = unet_config(name)
    hidden, pooled = text_widths(config)

    def encoder(width: int, projection: bool):
        cfg = CLIPTextConfig(vocab_size=vocab_size(), hidden_size=width, intermediate_size=64, num_hidden_layers=1,
                             num_attention_heads=max(1, width // 64), max_position_embeddings=77,
                             hidden_act="quick_gelu", projection_dim=width, **special_token_ids())
        with demo.seeded_init(SEED, name, "text", width):
            return (CLIPTextModelWithProjection if projection else CLIPTextModel)(cfg).eval()

    levels = vae_factor(name).bit_length()  # factor 8 → 4 levels (3 downsamplers), factor 2 → 2
    with demo.seeded_init(SEED, name, "vae"):
        vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * levels,
                            up_block_types=("UpDecoderBlock2D",) * levels, block_out_channels=(16,) * levels,
                            layers_per_block=1, latent_channels=4, norm_num_groups=16, mid_block_add_attention=False,
                            scaling_factor=0.18215, force_upcast=True)
    common = dict(vae=vae, text_encoder=encoder(hidden, False), tokenizer=build_clip_tokenizer(),
                  unet=build_unet(name, "cpu"), scheduler=demo.build_scheduler("sdxl" if pooled else "sd15"),
                  feature_extractor=None, image_encoder=None)
    if pooled is None:
        return StableDiffusionPipeline(**common, safety_checker=None, requires_safety_checker=False)
    return StableDiffusionXLPipeline(**common, text_encoder_2=encoder(pooled, True), tokenizer_2=build_clip_tokenizer(),
                                     force_zeros_for_empty_prompt=True, add_watermarker=False)


def import_model_libraries() -> None:
    """Import diffusers' and transformers' classes before any timer starts (imports are not build time)."""
    import diffusers  # noqa: F401
    from diffusers import AutoencoderKL, StableDiffusionPipeline, StableDiffusionXLPipeline, UNet2DConditionModel  # noqa: F401
    from transformers import CLIPTextModel, CLIPTextModelWithProjection  # noqa: F401


def load_pipe(name: str, dtype: str, device: str, hub_cache: str | None, variant: str | None = None):
    """(pipeline, load path) on ``device`` in ``dtype``."""
    import torch

    if hub_cache:
        os.environ["HF_HUB_CACHE"] = hub_cache
        from diffact.models.loading import load_pipeline

        pipe = load_pipeline(MODELS[name][0], dtype=dtype, device=device, variant=variant)
        what = f"variant {variant} " if variant else ""
        return pipe, f"diffact.models.loading.load_pipeline({MODELS[name][0]}) {what}from the hub cache {hub_cache}"
    pipe = standin_pipeline(name)
    pipe.set_progress_bar_config(disable=True)
    pipe.to(device=device, dtype=getattr(torch, dtype))
    return pipe, f"{unet_origin(name)} + minimal stand-in VAE and text encoders"


def unet_origin(name: str) -> str:
    return ("U-Net from the demo's config (diffact.models.demo, seeded random weights)" if MODELS[name][0].startswith("demo:")
            else "U-Net from diffact.models.configs (seeded random weights)")


# ---- the variants (each in its own process) ------------------------------------------------------------------------

def unet_inputs(config: dict, latent: int, dtype, device):
    import torch

    g = torch.Generator().manual_seed(SEED)
    hidden, pooled = text_widths(config)
    inputs = dict(sample=torch.randn(1, 4, latent, latent, generator=g), timestep=torch.tensor([TIMESTEP]),
                  encoder_hidden_states=torch.randn(1, 77, int(config["cross_attention_dim"]), generator=g))
    if pooled:
        size = latent * 8
        inputs["added_cond_kwargs"] = {"text_embeds": torch.randn(1, pooled, generator=g),
                                       "time_ids": torch.tensor([[size, size, 0, 0, size, size]], dtype=torch.float32)}
    def move(v):
        if isinstance(v, dict):
            return {k: move(x) for k, x in v.items()}
        return v.to(device, dtype) if v.is_floating_point() else v.to(device)
    return {k: move(v) for k, v in inputs.items()}


def _peaks(device: str) -> dict:
    import torch

    peaks = {"peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    peaks["cuda_peak_bytes"] = int(torch.cuda.max_memory_allocated()) if device.startswith("cuda") else None
    return peaks


def run_forward(name: str, image_size: int, dtype: str, device: str, repeats: int, hub_cache: str | None,
                variant: str | None = None) -> dict:
    import torch

    import_model_libraries()
    start = time.perf_counter()
    if hub_cache:
        pipe, load_path = load_pipe(name, dtype, device, hub_cache, variant)
        unet = pipe.unet
    else:
        unet = build_unet(name, "cpu").to(device=device, dtype=getattr(torch, dtype))
        load_path = unet_origin(name)
    build = time.perf_counter() - start
    inputs = unet_inputs(dict(unet.config), image_size // vae_factor(name), getattr(torch, dtype), device)
    times = []
    with torch.no_grad():
        unet(**inputs)  # warm-up (allocator, kernels)
        for _ in range(repeats):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            unet(**inputs)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    return {"load_path": load_path, "build_seconds": round(build, 2), "seconds_per_forward": statistics.median(times),
            "times": [round(t, 4) for t in times], "repeats": repeats, **_peaks(device)}


def run_store(name: str, layer_set: str, image_size: int, dtype: str, device: str, hub_cache: str | None,
              variant: str | None = None) -> dict:
    import numpy as np
    import torch
    from PIL import Image

    from diffact.extract.layersets import resolve_set
    from diffact.extract.pipeline import ExtractionSettings
    from diffact.extract.run import extract_to_store

    import_model_libraries()
    start = time.perf_counter()
    pipe, load_path = load_pipe(name, dtype, device, hub_cache, variant)
    build = time.perf_counter() - start
    layers = resolve_set(pipe.unet, MODELS[name][1], layer_set)
    with tempfile.TemporaryDirectory(prefix="bench-paper-scale-") as tmp:
        image = Path(tmp) / "img_000.png"
        rng = np.random.default_rng(SEED)
        Image.fromarray(rng.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8)).save(image)
        image_id = "bench/img_000"
        settings = ExtractionSettings(t=TIMESTEP, prompt=PROMPT, image_size=image_size, dtype=dtype)
        start = time.perf_counter()
        with torch.no_grad():
            store = extract_to_store(pipe, layers, [(image_id, image)], Path(tmp) / "store", {"bench": name},
                                     settings, batch_size=1, storage_dtype="float16")
        seconds = time.perf_counter() - start
        shard = store.shard_path(image_id)
        size = shard.stat().st_size
        with open(shard, "rb") as handle:
            header = int.from_bytes(handle.read(8), "little")
        shapes = {n: list(s) for n, s in store.meta["layers"].items()}
    return {"load_path": load_path, "build_seconds": round(build, 2), "seconds": round(seconds, 3),
            "layers": len(layers), "shard_bytes": size, "header_bytes": 8 + header, "tensor_bytes": size - 8 - header,
            "shapes": shapes, **_peaks(device)}


# ---- the parent: computed bytes, subprocesses, merge, tables -----------------------------------------------------

def computed_sets(name: str, image_size: int, storage_dtype: str = "float16") -> dict:
    """Bytes per stored image of every layer set of the family, from the catalog on the meta device."""
    from diffact.budget import shard_bytes, stored_shapes
    from diffact.extract.layersets import available_sets, resolve_set
    from diffact.models.configs import build_unet as meta_unet
    from diffact.utils.errors import LayerError

    unet = meta_unet(unet_config(name))
    family = MODELS[name][1]
    out = {}
    for layer_set in available_sets(family):
        try:
            names = resolve_set(unet, family, layer_set)
        except LayerError as err:  # a set naming layers this model lacks
            out[layer_set] = {"unavailable": str(err)}
            continue
        shapes = stored_shapes(unet, names, image_size, vae_factor(name))
        out[layer_set] = {"activations": len(names), "channels": sum(s[0] for s in shapes.values()),
                          **shard_bytes(shapes, storage_dtype), "shapes": {n: list(s) for n, s in shapes.items()}}
    return out


def machine(device: str) -> dict:
    import diffusers
    import torch

    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(0)
    else:
        name = platform.processor() or platform.machine()
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
    return {"cpu_count": os.cpu_count(), "torch": torch.__version__, "diffusers": diffusers.__version__,
            "python": platform.python_version(), "platform": platform.platform(), "device": device,
            "device_name": name}


def child(args, variant: str) -> dict:
    cmd = [sys.executable, __file__, "--one", args.current, variant, "--image-size", str(args.current_size),
           "--dtype", args.dtype, "--device", args.device, "--repeats", str(args.repeats), "--threads", str(args.threads)]
    if args.hub_cache:
        cmd += ["--hub-cache", args.hub_cache] + (["--variant", args.variant] if args.variant else [])
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"bench_paper_scale: {args.current} {variant} failed (exit {done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def store_sets(args, name: str, sets: dict) -> list[str]:
    """The sets to write a real store image for: --store-sets, or all paper sets the model has (--quick), or pool."""
    usable = [s for s, e in sets.items() if "unavailable" not in e]
    wanted = args.store_sets or ("all" if args.quick else "pool")
    names = [s for s in PAPER_SETS if s in usable] if wanted == "all" else wanted.split(",")
    unknown = [s for s in names if s not in usable]
    if unknown:
        raise SystemExit(f"bench_paper_scale: {name} has no (complete) layer set {unknown} (usable: {', '.join(usable)})")
    return names


def bench_model(args, name: str) -> dict:
    size = args.image_size or (QUICK_IMAGE_SIZE if args.quick and not name.startswith("demo") else MODELS[name][2])
    args.current, args.current_size = name, size
    print(f"{name} at {size} px ({size // vae_factor(name)}² latents), {args.dtype} on {args.device}", flush=True)
    sets = computed_sets(name, size)
    forward = child(args, "forward")
    print(f"  forward: build {forward['build_seconds']:.1f} s, {forward['seconds_per_forward']:.3f} s/pass, "
          f"peak RSS {forward['peak_rss_bytes'] / 2**30:.2f} GiB", flush=True)
    load_path = forward["load_path"]
    for layer_set in store_sets(args, name, sets):
        measured = child(args, f"store:{layer_set}")
        computed = sets[layer_set]
        shapes_agree = measured.pop("shapes") == computed["shapes"]
        measured["agrees"] = bool(shapes_agree and measured["tensor_bytes"] == computed["tensor_bytes"])
        measured["shard_vs_computed"] = round(measured["shard_bytes"] / computed["shard_bytes"], 5)
        load_path = measured["load_path"]
        computed["measured"] = measured
        print(f"  store {layer_set}: {measured['layers']} layers, shard {measured['shard_bytes'] / 2**20:.2f} MiB "
              f"(computed {computed['shard_bytes'] / 2**20:.2f} MiB, ×{measured['shard_vs_computed']:.4f}, "
              f"{'agrees' if measured['agrees'] else 'DISAGREES'}), {measured['seconds']:.1f} s "
              f"({measured['seconds'] / forward['seconds_per_forward']:.2f}× a bare pass), peak RSS "
              f"{measured['peak_rss_bytes'] / 2**30:.2f} GiB", flush=True)
    for entry in sets.values():
        entry.pop("shapes", None)
    return {"source": MODELS[name][0], "family": MODELS[name][1], "image_size": size, "latent": size // vae_factor(name),
            "paper_image_size": MODELS[name][2], "quick": size != MODELS[name][2], "dtype": args.dtype,
            "storage_dtype": "float16", "device": args.device, "threads": args.threads,
            "date": datetime.date.today().isoformat(), "machine": machine(args.device), "load_path": load_path,
            "forward": forward, "layer_sets": sets}


def markdown(result: dict) -> str:
    machine_ = result["machine"]
    lines = [f"# Paper-scale benchmark ({result['date']})", "",
             f"Machine: {machine_['device_name']}, {machine_['cpu_count']} CPUs, torch {machine_['torch']}, "
             f"diffusers {machine_['diffusers']}. Each row from `benchmarks/bench_paper_scale.py` "
             "(`diffact budget` reads paper_scale.json).", "",
             "| model | px | dtype | quick | build s | s / forward | peak RSS (GiB) | date | load path |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, e in result["models"].items():
        f = e["forward"]
        lines.append(f"| {name} | {e['image_size']} | {e['dtype']} | {'yes' if e['quick'] else 'no'} | "
                     f"{f['build_seconds']:.1f} | {f['seconds_per_forward']:.3f} | {f['peak_rss_bytes'] / 2**30:.2f} | "
                     f"{e['date']} | {e['load_path']} |")
    lines += ["", "Bytes per stored image (fp16), computed from the catalog; measured where a store was written:", "",
              "| model | px | set | activations | channels | computed (MiB) | measured shard (MiB) | agrees | "
              "store RSS (GiB) | store s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, e in result["models"].items():
        for layer_set, s in e["layer_sets"].items():
            if "unavailable" in s:
                continue
            m = s.get("measured")
            lines.append(f"| {name} | {e['image_size']} | {layer_set} | {s['activations']} | {s['channels']} | "
                         f"{s['shard_bytes'] / 2**20:.2f} | {m['shard_bytes'] / 2**20:.2f} | "
                         f"{'yes' if m['agrees'] else 'NO'} | {m['peak_rss_bytes'] / 2**30:.2f} | {m['seconds']:.1f} |"
                         if m else
                         f"| {name} | {e['image_size']} | {layer_set} | {s['activations']} | {s['channels']} | "
                         f"{s['shard_bytes'] / 2**20:.2f} | – | – | – | – |")
    missing = [m for m in PAPER_MODELS if m not in result["models"] or result["models"][m]["quick"]]
    if missing:
        lines += ["", f"Not measured at the paper's size yet: {', '.join(missing)}."]
    return "\n".join(lines) + "\n"


def print_ratios(result: dict, names: list[str]) -> None:
    models = result["models"]
    base = next((n for n in names if n in models), None)
    for name in names:
        if name == base or name not in models:
            continue
        a, b = models[name]["forward"], models[base]["forward"]
        print(f"  {name} / {base}: × {a['seconds_per_forward'] / b['seconds_per_forward']:.2f} s per pass, "
              f"× {a['peak_rss_bytes'] / b['peak_rss_bytes']:.2f} peak RSS "
              f"({models[name]['image_size']} vs {models[base]['image_size']} px)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(PAPER_MODELS), help=f"comma list of {', '.join(MODELS)}")
    parser.add_argument("--dtype", help="float32 or bfloat16 on cpu (default float32); float16 on cuda (default)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--repeats", type=int, default=None, help="timed forward passes after the warm-up (default 3; "
                                                                   "1 with --quick)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="JSON result, merged per model (a .md table beside)")
    parser.add_argument("--fresh", action="store_true", help="replace --out instead of merging into it")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_IMAGE_SIZE} px instead of the paper's size and "
                                                             "every paper set written (a check, not a measurement)")
    parser.add_argument("--image-size", type=int, help="override the image size (px)")
    parser.add_argument("--store-sets", help="layer sets to write one real store image for: a comma list or 'all' "
                                             f"({', '.join(PAPER_SETS)}); default pool (all with --quick)")
    parser.add_argument("--hub-cache", help="load pipelines with load_pipeline from this Hugging Face cache "
                                            "(e.g. `diffact make-standin-models` output) instead of building them")
    parser.add_argument("--variant", help="with --hub-cache: the weight-file variant to load (e.g. fp16)")
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.dtype = args.dtype or ("float16" if args.device.startswith("cuda") else "float32")
    args.repeats = args.repeats or (1 if args.quick else 3)
    if not args.device.startswith("cuda") and args.dtype not in ("float32", "bfloat16"):
        parser.error(f"--dtype {args.dtype} on {args.device}: use float32 or bfloat16 (float16 is for cuda)")
    import torch

    torch.set_num_threads(args.threads)
    if args.one:
        name, what = args.one
        if what == "forward":
            out = run_forward(name, args.image_size, args.dtype, args.device, args.repeats, args.hub_cache,
                              args.variant)
        else:
            out = run_store(name, what.split(":", 1)[1], args.image_size, args.dtype, args.device, args.hub_cache,
                            args.variant)
        print(json.dumps(out))
        return
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {', '.join(MODELS)}")
    out = Path(args.out)
    result = {"models": {}}
    if out.is_file() and not args.fresh:
        result = json.loads(out.read_text())
    for name in names:
        result["models"][name] = bench_model(args, name)
    result.update(benchmark="benchmarks/bench_paper_scale.py", date=datetime.date.today().isoformat(),
                  machine=machine(args.device), dtype=args.dtype, storage_dtype="float16")
    result["models"] = {n: result["models"][n] for n in sorted(result["models"], key=list(MODELS).index)}
    from diffact.utils.io import write_json, write_text

    write_json(out, result, sort_keys=False)
    write_text(out.with_suffix(".md"), markdown(result))
    print_ratios(result, names)
    print(f"wrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
