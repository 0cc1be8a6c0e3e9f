"""Extraction overhead benchmark (issue: extraction engine, item 7).

Measures, in ONE run and on the same machine, the U-Net forward time of
  bare          no hooks (the default SDPA processors)
  hooks-all     every non-map activation of the catalog hooked (kept in memory)
  maps          the practical set + the attention maps of those ViT blocks only (map processor there only)
  early-exit    an up-level0/1 set with early exit (the decoder tail never runs)
and reports each as a ratio to `bare`, plus the peak RSS of each variant (each runs in its own
subprocess so the peaks do not mix). Targets: hooks ≤ 1.10×, maps ≤ 1.5×, early exit ≤ 0.75×.

Models: the demo's tiny SD1.5-shaped U-Net and the full-size SD1.5 architecture (random weights, fp32,
CPU, 64×64 latents = 512-px images, 77 text tokens; about 3.7 GB of RAM to build).

    python benchmarks/bench_extraction.py [--models demo,sd15] [--repeats 3] [--out results/bench]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = ("bare", "hooks-all", "maps", "early-exit")
TARGETS = {"hooks-all": 1.10, "maps": 1.5, "early-exit": 0.75}
MAP_BLOCKS = ("up-level1-repeat1-vit-block0", "up-level2-repeat1-vit-block0")
EARLY_SET = ("up-level0-upsampler-out", "up-level1-repeat1-vit-block0-cross-q", "up-level1-repeat2-res-out")


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
    from diffact.families.unet import catalog
    from diffact.extract.layersets import resolve_set

    if variant == "hooks-all":
        return [a.name for a in catalog(unet, include_maps=False)], False
    if variant == "maps":
        practical = resolve_set(unet, "sd15", "practical")
        return practical + [f"{b}-{k}-map" for b in MAP_BLOCKS for k in ("self", "cross")], False
    if variant == "early-exit":
        return list(EARLY_SET), True
    return [], False


def run_variant(model: str, variant: str, repeats: int, threads: int) -> dict:
    import torch

    from diffact.extract.hooks import ActivationCapture

    torch.set_num_threads(threads)
    unet, inputs = build(model)
    names, early = layers_for(variant, unet)
    times = []
    with torch.no_grad():
        unet(**inputs)  # warm-up (allocator, kernels)
        for _ in range(repeats):
            start = time.perf_counter()
            if names:
                with ActivationCapture(unet, names, early_exit=early) as cap:
                    feats = cap.run(lambda: unet(**inputs))
                del feats
            else:
                unet(**inputs)
            times.append(time.perf_counter() - start)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"model": model, "variant": variant, "layers": len(names), "seconds": statistics.median(times),
            "peak_rss_mb": round(peak_mb)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="demo,sd15")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="results/bench")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (use the number of idle cores)")
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_variant(*args.one, args.repeats, args.threads)))
        return
    rows = []
    for model in args.models.split(","):
        for variant in VARIANTS:
            done = subprocess.run([sys.executable, __file__, "--one", model, variant, "--repeats", str(args.repeats),
                               "--threads", str(args.threads)],
                                  capture_output=True, text=True, check=True)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"  {model:5s} {variant:10s} {rows[-1]['seconds']:.3f} s  {rows[-1]['peak_rss_mb']} MB", flush=True)
    import pandas as pd

    from diffact.utils.io import write_csv, write_text

    table = pd.DataFrame(rows)
    bare = table[table.variant == "bare"].set_index("model")["seconds"]
    table["ratio_to_bare"] = [round(r.seconds / bare[r.model], 3) for r in table.itertuples()]
    table["target"] = table.variant.map(TARGETS)
    table["meets_target"] = [bool(r.ratio_to_bare <= r.target) if r.target == r.target else None for r in table.itertuples()]
    out = Path(args.out)
    write_csv(out / "extraction.csv", table)
    write_text(out / "extraction.md", table.to_markdown(index=False) + "\n")
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
