"""Extraction overhead benchmark (issue #19 point 4; first written for the extraction-engine issue, item 7).

Models: the demo's tiny SD1.5-shaped U-Net and the full-size SD1.5 architecture (random weights, fp32, CPU,
64×64 latents = 512-px images, 77 text tokens; about 3.7 GB of RAM to build). Variants of one U-Net forward:

  bare          no hooks (the default SDPA processors)
  hooks-all     every non-map activation of the catalog hooked and kept (165 for SD1.5)
  maps          the practical set + the attention maps of two ViT blocks (map processor there only)
  early-exit    an up-level0/1 set with early exit (the decoder tail never runs)

What each number means (``results/bench/extraction.{csv,md}``, one row per model and variant):

  seconds       median wall time of one forward over ``--repeats`` (≥ 5) forwards. All variants of a model run
                in ONE process, interleaved: after one warm-up forward of each variant, every round runs each
                variant once (the order rotates from round to round), so bare and hooked forwards alternate
                and share whatever else the machine was doing at the time.
  ratio_to_bare seconds / bare's seconds, both from that same run: the overhead the target is about
                (hooks-all ≤ 1.10×, maps ≤ 1.5×, early-exit ≤ 0.75×).
  cpu_seconds   median process CPU time (user + system) of one forward. With ``--threads 1`` it is close to the
                wall time on an idle machine and much less disturbed by other jobs than the wall time.
  cpu_ratio     cpu_seconds / bare's cpu_seconds (same run).
  page_faults   median minor page faults of one forward: memory the forward had to get from the kernel (each
                fault maps and zeroes a fresh 4 KiB page), which is where keeping activations alive costs time.
  peak_rss_mb   peak resident memory of a process that builds the model and runs this variant twice. Each
                variant runs in its own subprocess, because one process has one peak.

and, per model, one "end-to-end" row (``results/bench/extraction_e2e.csv``): one image through the whole
extraction of every non-map activation into a feature store, as ``extract_to_store`` does it:

  extract_s     ``DiffusionFeatureExtractor(image)``: VAE encode, noising and the hooked U-Net forward
  write_s       ``FeatureStore.write`` of that image: each activation made contiguous (a token activation is
                captured as a zero-copy B×C×H×W view of the module's B×N×C output, so its one copy is made
                here), serialised by safetensors and written to a file
  total_s       extract_s + write_s, the per-image cost of a screening store (median of ``--repeats`` images)

Threads: ``--threads`` torch threads for every process (use the number of idle cores; 1 gives the steadiest
numbers on a shared machine). Allocator: every process runs with the memory policy ``diffact extract`` sets
(:func:`diffact.utils.memory.reuse_freed_memory`: freed memory is kept for reuse rather than refaulted);
``--malloc default`` measures glibc's default policy instead, under which the kept activations cost the page
faults that were most of hooks-all's overhead (issue #19 point 4).

    python benchmarks/bench_extraction.py [--models demo,sd15] [--repeats 5] [--threads 1] [--malloc default]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = ("bare", "hooks-all", "maps", "early-exit")
TARGETS = {"hooks-all": 1.10, "maps": 1.5, "early-exit": 0.75}
MAP_BLOCKS = ("up-level1-repeat1-vit-block0", "up-level2-repeat1-vit-block0")
EARLY_SET = ("up-level0-upsampler-out", "up-level1-repeat1-vit-block0-cross-q", "up-level1-repeat2-res-out")
MIN_REPEATS = 5


def build(model: str):
    import torch

    if model == "demo":
        from diffact.models.demo import build_unet

        unet, latent, tokens, text_dim = build_unet("sd15", seed=0), 32, 77, 32
    else:
        from diffact.models.configs import build_unet, reference_unet_config

        torch.manual_seed(0)
        unet = build_unet(reference_unet_config("stable-diffusion-v1-5/stable-diffusion-v1-5"), device="cpu")
        latent, tokens, text_dim = 64, 77, 768
    g = torch.Generator().manual_seed(0)
    inputs = dict(sample=torch.randn(1, 4, latent, latent, generator=g), timestep=torch.tensor(51),
                  encoder_hidden_states=torch.randn(1, tokens, text_dim, generator=g))
    return unet.eval(), inputs


def layers_for(variant: str, unet) -> tuple[list[str], bool]:
    from diffact.extract.layersets import resolve_set
    from diffact.families.unet import catalog

    if variant == "hooks-all":
        return [a.name for a in catalog(unet, include_maps=False)], False
    if variant == "maps":
        practical = resolve_set(unet, "sd15", "practical")
        return practical + [f"{b}-{k}-map" for b in MAP_BLOCKS for k in ("self", "cross")], False
    if variant == "early-exit":
        return list(EARLY_SET), True
    return [], False


def forward_of(variant: str, unet, inputs):
    """A zero-argument call running one forward of ``variant`` (its features are dropped when it returns)."""
    from diffact.extract.hooks import ActivationCapture

    names, early = layers_for(variant, unet)
    if not names:
        return lambda: unet(**inputs)

    def hooked():
        with ActivationCapture(unet, names, early_exit=early) as cap:
            cap.run(lambda: unet(**inputs))

    return hooked


def measured(call) -> dict:
    """Wall seconds, process CPU seconds and minor page faults of one ``call()``."""
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    call()
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"seconds": wall, "cpu_seconds": cpu, "page_faults": after.ru_minflt - before.ru_minflt}


def rotated(items: tuple, by: int) -> tuple:
    by %= len(items)
    return items[by:] + items[:by]


def time_variants(model: str, repeats: int, threads: int) -> list[dict]:
    """Every variant of ``model`` in this one process, interleaved round by round (module docstring)."""
    import torch

    torch.set_num_threads(threads)
    unet, inputs = build(model)
    forwards = {v: forward_of(v, unet, inputs) for v in VARIANTS}
    samples: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    with torch.no_grad():
        for forward in forwards.values():  # warm-up: kernels, allocator, each variant's first-call costs
            forward()
        for round_ in range(repeats):
            for variant in rotated(VARIANTS, round_):
                samples[variant].append(measured(forwards[variant]))
    rows = []
    for variant in VARIANTS:
        medians = {k: statistics.median(s[k] for s in samples[variant]) for k in ("seconds", "cpu_seconds", "page_faults")}
        rows.append({"model": model, "variant": variant, "layers": len(layers_for(variant, unet)[0]), **medians})
    bare = rows[0]
    for row in rows:
        row["ratio_to_bare"] = round(row["seconds"] / bare["seconds"], 3)
        row["cpu_ratio"] = round(row["cpu_seconds"] / bare["cpu_seconds"], 3)
    return rows


def peak_rss(model: str, variant: str, threads: int) -> dict:
    """This process's peak RSS after building ``model`` and running ``variant`` twice (call in a fresh process)."""
    import torch

    torch.set_num_threads(threads)
    unet, inputs = build(model)
    forward = forward_of(variant, unet, inputs)
    with torch.no_grad():
        forward()
        forward()
    return {"model": model, "variant": variant, "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def build_pipeline(model: str):
    """A complete pipeline whose U-Net is :func:`build`'s: the demo's, or full-size SD1.5 components from their
    real configs with seeded random weights (as ``diffact standins`` writes them)."""
    from diffusers import StableDiffusionPipeline

    if model == "demo":
        from diffact.models.demo import random_init_pipeline

        return random_init_pipeline("sd15", seed=0), 64
    from diffact.models.configs import pipeline_components
    from diffact.models.standins import build_component

    parts = {name: build_component("sd15", name, seed=0) for name in pipeline_components("sd15")}
    return StableDiffusionPipeline(**parts, safety_checker=None, feature_extractor=None, image_encoder=None,
                                   requires_safety_checker=False), 512


def end_to_end(model: str, repeats: int, threads: int) -> dict:
    """Per-image seconds of extracting every non-map activation of one image into a store (module docstring)."""
    import torch

    from diffact.extract.pipeline import DiffusionFeatureExtractor, ExtractionSettings
    from diffact.extract.store import FeatureStore
    from diffact.families.unet import catalog

    torch.set_num_threads(threads)
    pipe, size = build_pipeline(model)
    names = [a.name for a in catalog(pipe.unet, include_maps=False)]
    extractor = DiffusionFeatureExtractor(pipe, names, ExtractionSettings(t=50, image_size=size))
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    times: dict[str, list[float]] = {"extract_s": [], "write_s": []}
    with tempfile.TemporaryDirectory() as tmp:
        store = FeatureStore.create(Path(tmp) / "store", {"bench": model})
        for i in range(repeats + 1):  # the first image is the warm-up
            start = time.perf_counter()
            feats = extractor(image, [f"img{i}"])
            extracted = time.perf_counter()
            store.write(f"img{i}", {name: value[0] for name, value in feats.items()})
            written = time.perf_counter()
            del feats
            if i:
                times["extract_s"].append(extracted - start)
                times["write_s"].append(written - extracted)
    row = {"model": model, "layers": len(names), **{k: round(statistics.median(v), 3) for k, v in times.items()}}
    row["total_s"] = round(row["extract_s"] + row["write_s"], 3)
    return row


def in_subprocess(*args: str) -> dict:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="demo,sd15")
    parser.add_argument("--repeats", type=int, default=MIN_REPEATS, help=f"forwards per variant (≥ {MIN_REPEATS})")
    parser.add_argument("--out", default="results/bench")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of every process")
    parser.add_argument("--no-e2e", action="store_true", help="skip the end-to-end store extraction")
    parser.add_argument("--malloc", choices=["extraction", "default"], default="extraction",
                        help="the allocator policy of `diffact extract` (default) or glibc's own")
    parser.add_argument("--part", nargs="+", help=argparse.SUPPRESS)  # internal: one part in a fresh process
    args = parser.parse_args()
    if args.repeats < MIN_REPEATS:
        parser.error(f"--repeats must be ≥ {MIN_REPEATS} (a median of fewer forwards is too noisy)")
    common = ["--repeats", str(args.repeats), "--threads", str(args.threads), "--malloc", args.malloc]
    if args.part:
        if args.malloc == "extraction":
            from diffact.utils.memory import reuse_freed_memory

            reuse_freed_memory()
        part, *rest = args.part
        if part == "time":
            print(json.dumps(time_variants(rest[0], args.repeats, args.threads)))
        elif part == "rss":
            print(json.dumps(peak_rss(rest[0], rest[1], args.threads)))
        else:
            print(json.dumps(end_to_end(rest[0], args.repeats, args.threads)))
        return
    import pandas as pd

    from diffact.utils.io import write_csv, write_text

    rows, e2e = [], []
    for model in args.models.split(","):
        timed = in_subprocess("--part", "time", model, *common)
        for row in timed:
            row.update(in_subprocess("--part", "rss", model, row["variant"], *common))
            print(f"  {model:5s} {row['variant']:10s} {row['seconds']:.3f} s  ×{row['ratio_to_bare']:.3f}  "
                  f"cpu ×{row['cpu_ratio']:.3f}  {row['page_faults']:.0f} faults  {row['peak_rss_mb']} MB", flush=True)
        rows += timed
        if not args.no_e2e:
            e2e.append(in_subprocess("--part", "e2e", model, *common))
            print(f"  {model:5s} end-to-end {e2e[-1]}", flush=True)
    table = pd.DataFrame(rows)
    table["malloc"] = args.malloc
    table["target"] = table.variant.map(TARGETS)
    table["meets_target"] = [bool(r.ratio_to_bare <= r.target) if r.target == r.target else None
                             for r in table.itertuples()]
    table["seconds"], table["cpu_seconds"] = table.seconds.round(3), table.cpu_seconds.round(3)
    out = Path(args.out)
    write_csv(out / "extraction.csv", table)
    text = table.to_markdown(index=False) + "\n"
    if e2e:
        write_csv(out / "extraction_e2e.csv", pd.DataFrame(e2e))
        text += "\nEnd to end, one image into a store (every non-map activation):\n\n"
        text += pd.DataFrame(e2e).to_markdown(index=False) + "\n"
    write_text(out / "extraction.md", text)
    print(text)


if __name__ == "__main__":
    main()
