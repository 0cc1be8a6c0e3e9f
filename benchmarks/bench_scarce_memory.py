"""Peak memory of the label-scarce pipeline (paper §2.10, docs/paper.md §7): bounded by the stream buffer, not by N.

The paper's code keeps every training pixel in RAM as an N×S²×C float32 matrix (30 × 256² × 3840 ≈ 30 GB for
Ours-XL on Horse-21). diffact streams pixels from the feature store's shards through one buffer of
``buffer_mb`` (``diffact.tasks.scarce.pixels.PixelStream``), so peak memory should not grow with N.

Two cases, each measured in a fresh subprocess (peak RSS = that child's ``ru_maxrss``, from ``os.wait4``)::

    python benchmarks/bench_scarce_memory.py                   # small scale: N = 2, 4, 8, 16 at 64², 512 ch
    python benchmarks/bench_scarce_memory.py --sizes 2,8,32 --channels 1024
    python benchmarks/bench_scarce_memory.py --paper-scale     # SDXL practical (Ours-XL) on Horse-21's shape

``--paper-scale`` writes a synthetic store with exactly the layers of SDXL's ``practical`` set as extracted at
1024 px (names, channels and native resolutions from the catalog walk of the real SDXL U-Net on the meta
device: 2×1280 ch at 32², 2×640 ch at 64², 3840 ch in all), stored float16 like the paper profile, in the
layout ``diffact extract`` writes (``meta.json``, one shard per image, ``complete.json``); 30 training and
``--n-test`` test images with 256² label maps in Horse-21's class range (seeded random features). It then runs
``diffact scarce`` — the command the workflow rule ``scarce_set`` runs — with the paper profile's protocol
(``config/paper.yaml`` ``scarce.protocol``: 10 members, batch 64, Adam 1e-3, 256², ``buffer_mb``) but one
split and one epoch, cut (``--max-batches``) just past the first two of its buffers: the stream then refills
its buffer twice, the moment a second buffer would be allocated if the first were still held; the rest of an
epoch repeats that (``--full-epoch`` runs it all: ~30k batches per member, about an hour on one CPU thread).
The synthetic data is deleted afterwards. Goal: peak RSS ≤ 8 GiB; the exit status is 1 when it is exceeded.

Results go to ``--out`` (default ``results/bench``): ``scarce_memory.{csv,md}`` (small scale) and
``scarce_memory_paper.{json,md}`` (paper scale). ``diffact budget`` reads the paper-scale file from beside its
benchmark file (``--out benchmarks/results``; the committed one is from the 2026-12-02 rehearsal).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GIB = 2**30
PAPER_LIMIT_GIB = 8.0
SDXL_ID = "stabilityai/stable-diffusion-xl-base-1.0"
PAPER_IMAGE_SIZE = 1024  # SDXL extraction size (docs/paper.md §2.8)
VAE_FACTOR = 8
HORSE = {"name": "horse_21", "num_classes": 21, "train": 30}


# ---- measuring a child process -----------------------------------------------------------------------------

def measure(cmd: list[str], log_path: Path, rss_cap_gib: float | None = None, env: dict | None = None) -> dict:
    """Run ``cmd`` with stdout+stderr to ``log_path``; its peak RSS (``ru_maxrss`` of this child alone, via
    ``os.wait4``), wall seconds and exit status. With ``rss_cap_gib`` the child is killed once its RSS passes
    the cap (a guard for shared machines; the result then says ``killed_at_cap``)."""
    killed = threading.Event()
    started = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        done = threading.Event()

        def watch() -> None:
            status = Path(f"/proc/{proc.pid}/status")
            while not done.wait(0.5):
                try:
                    rss_kib = int(re.search(r"VmRSS:\s+(\d+)", status.read_text()).group(1))
                except (OSError, AttributeError):
                    continue
                if rss_kib * 1024 > rss_cap_gib * GIB:
                    killed.set()
                    os.kill(proc.pid, signal.SIGKILL)
                    return

        watcher = threading.Thread(target=watch, daemon=True) if rss_cap_gib else None
        if watcher:
            watcher.start()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here; keep Popen from waiting again
        done.set()
    return {"returncode": proc.returncode, "peak_rss": usage.ru_maxrss * 1024,  # Linux reports KiB
            "seconds": time.perf_counter() - started, "killed_at_cap": killed.is_set()}


def _fail(result: dict, log_path: Path) -> None:
    tail = log_path.read_text(errors="replace").splitlines()[-30:]
    cause = "killed above the RSS cap" if result["killed_at_cap"] else f"exit status {result['returncode']}"
    sys.exit(f"benchmark child failed ({cause}); last lines of {log_path}:\n" + "\n".join(tail))


# ---- small scale: N training images at S², synthetic 2-layer store ----------------------------------------

def prepare(root: Path, n_train: int, n_test: int, size: int, layers: dict, num_classes: int, dtype: str) -> None:
    """Synthetic dataset (blocky labels) + a store whose features carry the labels plus noise."""
    import numpy as np
    import torch
    from PIL import Image

    from diffact.extract.store import FeatureStore

    rng = np.random.default_rng(0)
    store = FeatureStore.create(root / "store", {"bench": "scarce-memory"}, storage_dtype=dtype)
    block = max(size // 8, 1)
    for index in range(n_train + n_test):
        split = "train" if index < n_train else "test"
        folder = root / "data" / "real" / split
        folder.mkdir(parents=True, exist_ok=True)
        offset = int(rng.integers(num_classes))
        rows, cols = np.indices((size, size)) // block
        label = ((rows * 8 + cols + offset) % num_classes).astype(np.uint8)
        Image.fromarray(np.zeros((size, size, 3), dtype=np.uint8)).save(folder / f"im{index:03d}.png")
        np.save(folder / f"im{index:03d}.npy", label)
        feats = {}
        for name, (c, h) in layers.items():
            small = torch.from_numpy(label[:: size // h, :: size // h].astype(np.int64))
            signal_ = torch.nn.functional.one_hot(small, num_classes).float().permute(2, 0, 1)
            feats[name] = torch.randn(c, h, h) + signal_.repeat(c // num_classes + 1, 1, 1)[:c]
        store.write(f"{split}/im{index:03d}", feats)
    (root / "data" / "dataset.json").write_text(json.dumps({"name": "bench", "num_classes": num_classes}))


def run_small(root: Path, size: int, buffer_mb: float, max_batches: int | None, epochs: int, threads: int) -> dict:
    """One split of the pipeline in this process; its peak RSS and timings."""
    import torch

    from diffact.data.ddpmseg import open_ddpmseg
    from diffact.extract.store import FeatureStore
    from diffact.tasks.scarce.ensemble import EnsembleTrainSettings
    from diffact.tasks.scarce.pipeline import ScarceConfig, run_scarce

    torch.set_num_threads(threads)  # the MLPs are small: one thread avoids contention on a shared box
    store = FeatureStore.open(root / "store")
    dataset = open_ddpmseg(root / "data")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    config = ScarceConfig(size=size, splits=1, shuffle=False, buffer_mb=buffer_mb,
                          train=EnsembleTrainSettings(max_epochs=epochs, max_batches_per_epoch=max_batches))
    started = time.perf_counter()
    result = run_scarce(store, dataset, store.layers, config, progress=False)[0]
    return {
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "rss_after_imports": before,
        "seconds": time.perf_counter() - started,
        "train_pixels": result.train_pixels,
        "miou": result.miou,
    }


def small_scale(args) -> int:
    half = args.channels // 2
    layers = {"layer-a": (half, args.native), "layer-b": (args.channels - half, args.native // 2)}
    channels = sum(c for c, _ in layers.values())
    passthrough = ["--n-test", str(args.n_test), "--size", str(args.size), "--buffer-mb", str(args.buffer_mb),
                   "--epochs", str(args.epochs), "--threads", str(args.threads), "--layers-json", json.dumps(layers),
                   *(["--max-batches", str(args.max_batches)] if args.max_batches else [])]
    work = Path(tempfile.mkdtemp(prefix="bench-scarce-", dir=args.work))
    print(f"S={args.size}  C={channels}  buffer={args.buffer_mb:g} MiB  test images={args.n_test}")
    print(f"{'N train':>8} {'train px':>10} {'upstream N×S²×C f32':>20} {'peak RSS':>10} {'seconds':>8}")
    rows = []
    try:
        for n in [int(v) for v in args.sizes.split(",")]:
            root = work / f"n{n}"
            base = [sys.executable, __file__, "--root", str(root), "--n-train", str(n), *passthrough]
            subprocess.run([*base, "--child", "prepare"], check=True, capture_output=True, text=True)
            out = subprocess.run([*base, "--child", "run"], check=True, capture_output=True, text=True)
            res = json.loads(out.stdout.strip().splitlines()[-1])
            shutil.rmtree(root, ignore_errors=True)
            upstream = n * args.size**2 * channels * 4
            rows.append({"n_train": n, "train_pixels": res["train_pixels"], "size": args.size, "channels": channels,
                         "buffer_mb": args.buffer_mb, "upstream_gib": round(upstream / GIB, 3),
                         "peak_rss_gib": round(res["peak_rss"] / GIB, 3), "seconds": round(res["seconds"], 1)})
            print(f"{n:>8} {res['train_pixels']:>10} {upstream / GIB:>17.2f} GiB {res['peak_rss'] / GIB:>6.2f} GiB "
                  f"{res['seconds']:>8.1f}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    import pandas as pd

    from diffact.utils.io import write_csv, write_text

    table = pd.DataFrame(rows)
    write_csv(Path(args.out) / "scarce_memory.csv", table)
    write_text(Path(args.out) / "scarce_memory.md", table.to_markdown(index=False) + "\n")
    return 0


# ---- paper scale: SDXL practical at 1024 px, Horse-21's shape, `diffact scarce` ------------------------------

def practical_layers(image_size: int = PAPER_IMAGE_SIZE) -> dict[str, tuple[int, int, int]]:
    """SDXL's ``practical`` set as the store holds it after extraction at ``image_size``: name → (C, H, W), in
    forward order, from the catalog walk of the real SDXL U-Net config (meta device: shapes only)."""
    from diffact.families.registry import walk as walk_model
    from diffact.extract.layersets import channel_total, resolve_set
    from diffact.models.configs import build_unet, reference_unet_config

    unet = build_unet(reference_unet_config(SDXL_ID), device="meta")
    names = resolve_set(unet, "sdxl", "practical")
    latent = image_size // VAE_FACTOR
    by_name = {a.name: a for a in walk_model(unet)}
    layers = {name: (by_name[name].channels, *by_name[name].spatial((latent, latent))) for name in names}
    total = channel_total(unet, names, image_size)
    if sum(c for c, _, _ in layers.values()) != total:
        raise RuntimeError(f"catalog channels {layers} do not add up to channel_total {total}")
    return layers


def write_paper_store(root: Path, layers: dict, n_train: int, n_test: int, size: int, num_classes: int,
                      seed: int = 0) -> dict:
    """The synthetic store (float16, ``FeatureStore`` layout, finalised) and a DDPM-seg dataset folder.

    Labels: size² maps of 16×16-pixel blocks with classes drawn from 0..num_classes-1 (no block is under the
    <20-pixel rule, so every pixel trains). Features: seeded N(0, 1) noise — memory does not depend on values.
    """
    import numpy as np
    import torch
    from PIL import Image

    from diffact.extract.store import FeatureStore

    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    settings = {"bench": "scarce-memory-paper", "model": SDXL_ID, "layer_set": "practical",
                "image_size": PAPER_IMAGE_SIZE, "seed": seed}
    store = FeatureStore.create(root / "store", settings, layers, storage_dtype="float16",
                                recipe={"synthetic": "benchmarks/bench_scarce_memory.py --paper-scale"})
    blank = Image.fromarray(np.zeros((size, size, 3), dtype=np.uint8))
    ids = []
    for index in range(n_train + n_test):
        split = "train" if index < n_train else "test"
        folder = root / "data" / "real" / split
        folder.mkdir(parents=True, exist_ok=True)
        blocks = rng.integers(0, num_classes, (size // 16, size // 16)).astype(np.uint8)
        label = np.kron(blocks, np.ones((16, 16), dtype=np.uint8))
        blank.save(folder / f"im{index:03d}.png")
        np.save(folder / f"im{index:03d}.npy", label)
        image_id = f"{split}/im{index:03d}"
        store.write(image_id, {name: torch.randn(shape, generator=gen, dtype=torch.float32)
                               for name, shape in layers.items()})
        ids.append(image_id)
    store.finalize(ids)
    shard_bytes = sum(p.stat().st_size for p in (root / "store" / "shards").rglob("*.safetensors"))
    return {"store_bytes": shard_bytes, "images": len(ids),
            "bytes_per_image": sum(c * h * w * 2 for c, h, w in layers.values())}


def paper_protocol() -> dict:
    """``scarce.protocol`` of config/paper.yaml (the values the workflow passes to ``diffact scarce``)."""
    import yaml

    return yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())["scarce"]["protocol"]


def turnover_batches(pixel_counts: list[int], channels: int, buffer_mb: float, batch_size: int) -> int | None:
    """Batches per member that take training just past its first two buffers (so the stream refills its
    buffer twice, where a second buffer would be allocated if the first were still held), or None (a full
    epoch) when an epoch has at most two buffers. Uses the pipeline's own buffer arithmetic."""
    from diffact.tasks.scarce.ensemble import EnsembleTrainSettings
    from diffact.tasks.scarce.pipeline import ScarceConfig
    from diffact.tasks.scarce.pixels import buffer_count, buffer_sizes

    bp = ScarceConfig(buffer_mb=buffer_mb, train=EnsembleTrainSettings(batch_size=batch_size)).buffer_pixels(channels)
    sizes = buffer_sizes(pixel_counts, buffer_count(pixel_counts, bp))
    return (sizes[0] + sizes[1]) // batch_size + 1 if len(sizes) > 2 else None


def diffact_command() -> list[str]:
    script = Path(sys.executable).with_name("diffact")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from diffact.cli import main; sys.exit(main())"]


def paper_scale(args) -> int:
    protocol = paper_protocol()
    buffer_mb = args.buffer_mb if args.buffer_mb is not None else float(protocol["buffer_mb"])
    size = int(protocol["size"])
    layers = practical_layers()
    channels = sum(c for c, _, _ in layers.values())
    if args.max_batches is None and not args.full_epoch:
        args.max_batches = turnover_batches(HORSE["train"] * [size * size], channels, buffer_mb,
                                            int(protocol["batch_size"]))
    work = Path(tempfile.mkdtemp(prefix="bench-scarce-paper-", dir=args.work))
    print(f"SDXL practical at {PAPER_IMAGE_SIZE} px: " + ", ".join(f"{n} {c}×{h}×{w}" for n, (c, h, w) in layers.items()))
    print(f"{HORSE['train']} train + {args.n_test} test images, S={size}, C={channels}, float16 store; "
          f"protocol: {protocol['members']} members, batch {protocol['batch_size']}, lr {protocol['lr']}, "
          f"buffer {buffer_mb:g} MiB, {args.epochs} epoch(s)"
          + (f", ≤ {args.max_batches} batches/epoch" if args.max_batches else ""), flush=True)
    try:
        t0 = time.perf_counter()
        store_info = write_paper_store(work, layers, HORSE["train"], args.n_test, size, HORSE["num_classes"])
        print(f"synthetic store: {store_info['store_bytes']:,} bytes ({store_info['store_bytes'] / GIB:.2f} GiB; "
              f"{store_info['bytes_per_image']:,} per image) written in {time.perf_counter() - t0:.0f} s", flush=True)
        out_csv = work / "out" / "scarce.csv"
        cmd = [*diffact_command(), "--log", str(work / "scarce.log"), "scarce",
               "--store", str(work / "store"), "--dataset", str(work / "data"), "--dataset-name", HORSE["name"],
               "--layers", ",".join(layers), "--splits", "1", "--no-shuffle", "--seed", str(protocol["seed"]),
               "--size", str(size), "--models", str(protocol["members"]), "--epochs", str(args.epochs),
               "--batch-size", str(protocol["batch_size"]), "--lr", str(protocol["lr"]),
               "--pixel-rate", str(protocol["pixel_rate"]), "--buffer-mb", str(buffer_mb),
               "--device", args.device, "--threads", str(args.threads), "--out", str(out_csv),
               *(["--max-batches", str(args.max_batches)] if args.max_batches else [])]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        res = measure(cmd, work / "child.log", args.rss_cap_gib, env)
        if res["returncode"] != 0:
            _fail(res, work / "child.log")
        summary = json.loads(out_csv.with_suffix(".json").read_text())
        log_text = (work / "scarce.log").read_text()
        found = re.search(r"streamed in (\d+) buffers of <= (\d+) pixels; buffer (\d+) bytes", log_text)
        buffers = ({"buffers": int(found[1]), "buffer_pixels": int(found[2]), "buffer_bytes": int(found[3])}
                   if found else {})
    finally:
        shutil.rmtree(work, ignore_errors=True)

    split = summary["splits"][0]
    train_pixels = HORSE["train"] * size * size
    result = {
        "case": "paper-scale: SDXL practical (Ours-XL) on Horse-21's shape, diffact scarce",
        "layers": {n: list(s) for n, s in layers.items()}, "channels": channels, "size": size,
        "n_train": HORSE["train"], "n_test": args.n_test, "storage_dtype": "float16",
        "store_bytes": store_info["store_bytes"], "store_bytes_per_image": store_info["bytes_per_image"],
        "upstream_train_matrix_bytes": {"float16": train_pixels * channels * 2, "float32": train_pixels * channels * 4},
        "protocol": {**{k: protocol[k] for k in ("members", "batch_size", "lr", "pixel_rate", "seed")},
                     "buffer_mb": buffer_mb, "epochs": args.epochs, "max_batches": args.max_batches,
                     "splits": 1, "device": args.device, "threads": args.threads},
        **buffers,
        "batches_per_member": split["training"]["batches"][0],
        "peak_rss_bytes": res["peak_rss"], "peak_rss_gib": round(res["peak_rss"] / GIB, 3),
        "goal_gib": PAPER_LIMIT_GIB, "ratio_to_goal": round(res["peak_rss"] / GIB / PAPER_LIMIT_GIB, 3),
        "meets_goal": res["peak_rss"] <= PAPER_LIMIT_GIB * GIB,
        "wall_seconds": round(res["seconds"], 1),
        "miou_of_noise_features": round(summary["miou_mean"], 2),
        "measured": time.strftime("%Y-%m-%d"),
    }
    from diffact.utils.io import write_json, write_text

    out = Path(args.out)
    write_json(out / "scarce_memory_paper.json", result, sort_keys=False)
    lines = ["| quantity | value |", "|---|---|"] + [
        f"| {key} | {value} |" for key, value in result.items() if key not in ("layers", "protocol", "case")]
    write_text(out / "scarce_memory_paper.md", f"{result['case']}\n\n" + "\n".join(lines) + "\n")
    verdict = "OK" if result["meets_goal"] else "OVER"
    print(f"trained {result['batches_per_member']} batches/member"
          + (f" from {buffers['buffers']} buffers of ≤ {buffers['buffer_pixels']:,} px "
             f"({buffers['buffer_bytes'] / GIB:.2f} GiB)" if buffers else ""))
    print(f"peak RSS {res['peak_rss'] / GIB:.2f} GiB = {result['ratio_to_goal']:.2f} × the {PAPER_LIMIT_GIB:g} GiB goal "
          f"({verdict}); wall {res['seconds']:.0f} s; upstream would hold "
          f"{result['upstream_train_matrix_bytes']['float32'] / GIB:.1f} GiB float32 → {out}/scarce_memory_paper.json")
    return 0 if result["meets_goal"] else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paper-scale", "--paper-shape", action="store_true",
                        help="SDXL practical (3840 ch, 32²/64² fp16) × 30 Horse-21-shaped images via `diffact scarce`")
    parser.add_argument("--sizes", default="2,4,8,16", help="small scale: numbers of training images")
    parser.add_argument("--n-test", type=int, default=2, help="test images (both cases)")
    parser.add_argument("--size", type=int, default=64, help="small scale: S, features/labels resized to S²")
    parser.add_argument("--channels", type=int, default=512, help="small scale: total channels (2 layers)")
    parser.add_argument("--native", type=int, default=16, help="small scale: native feature resolution")
    parser.add_argument("--buffer-mb", type=float, help="stream buffer (default: small 32, paper scale the paper "
                                                        "profile's scarce.protocol.buffer_mb)")
    parser.add_argument("--max-batches", type=int, help="cap batches per epoch (default: small scale a full epoch; "
                                                        "paper scale just past the first two buffers)")
    parser.add_argument("--full-epoch", action="store_true", help="paper scale: no batch cap (~30k batches)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the measured process")
    parser.add_argument("--device", default="cpu", help="paper scale: --device of diffact scarce")
    parser.add_argument("--rss-cap-gib", type=float, default=12.0,
                        help="paper scale: kill the measured child above this RSS (shared machines; 0 = no cap)")
    parser.add_argument("--work", help="folder for the synthetic data (default: the system temp folder); "
                                       "a subfolder is made and deleted afterwards")
    parser.add_argument("--out", default=str(ROOT / "results" / "bench"), help="folder for the result files")
    parser.add_argument("--child", choices=["prepare", "run"], help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--n-train", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--layers-json", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        layers = {k: tuple(v) for k, v in json.loads(args.layers_json).items()}
        if args.child == "prepare":
            prepare(Path(args.root), args.n_train, args.n_test, args.size, layers, 21, "float32")
        else:
            print(json.dumps(run_small(Path(args.root), args.size, args.buffer_mb, args.max_batches, args.epochs,
                                       args.threads)))
        return 0
    if args.paper_scale:
        return paper_scale(args)
    args.buffer_mb = 32.0 if args.buffer_mb is None else args.buffer_mb
    return small_scale(args)


if __name__ == "__main__":
    sys.exit(main())
