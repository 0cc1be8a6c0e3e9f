"""Peak memory of the label-scarce pipeline vs the number of training images (paper §2.10, spec §7).

The paper's code keeps every training pixel in RAM as an N×S²×C float32 matrix (30 × 256² × 3840 ≈ 30 GB for
Ours-XL on Horse-21). diffact streams pixels from the feature store in bounded buffers
(``diffact.tasks.scarce.pixels.PixelStream``), so peak memory should not grow with N.

For each N this script writes a synthetic DDPM-seg dataset and feature store (one subprocess), then runs one
split of the pipeline in a fresh subprocess and reads that process's peak RSS (``ru_maxrss``)::

    python benchmarks/bench_scarce_memory.py                       # small scale: N = 2, 4, 8, 16
    python benchmarks/bench_scarce_memory.py --sizes 2,8,32 --channels 1024
    python benchmarks/bench_scarce_memory.py --paper-shape         # 30 images, 256², 3840 ch fp16; must be ≤ 8 GiB

``--paper-shape`` mimics Ours-XL (2×1280 ch at 32² + 2×640 ch at 64², stored fp16, resized to 256²) and caps the
batches per epoch (training time is not what is measured; the buffers are built in full regardless).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GIB = 2**30
PAPER_LIMIT_GIB = 8.0


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
            signal = torch.nn.functional.one_hot(small, num_classes).float().permute(2, 0, 1)
            feats[name] = torch.randn(c, h, h) + signal.repeat(c // num_classes + 1, 1, 1)[:c]
        store.write(f"{split}/im{index:03d}", feats)
    (root / "data" / "dataset.json").write_text(json.dumps({"name": "bench", "num_classes": num_classes}))


def run(root: Path, size: int, buffer_mb: float, max_batches: int | None, epochs: int, threads: int) -> dict:
    """One split of the pipeline; returns peak RSS and timings."""
    import torch

    from diffact.data.ddpmseg import open_ddpmseg
    from diffact.extract.store import FeatureStore
    from diffact.tasks.scarce.ensemble import TrainSettings
    from diffact.tasks.scarce.pipeline import ScarceConfig, run_scarce

    torch.set_num_threads(threads)  # the MLPs are small: one thread avoids contention on a shared box
    store = FeatureStore.open(root / "store")
    dataset = open_ddpmseg(root / "data")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    config = ScarceConfig(size=size, splits=1, shuffle=False, buffer_mb=buffer_mb,
                          train=TrainSettings(max_epochs=epochs, max_batches_per_epoch=max_batches))
    started = time.perf_counter()
    result = run_scarce(store, dataset, store.layers, config, progress=False)[0]
    return {
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,  # Linux reports KiB
        "rss_after_imports": before,
        "seconds": time.perf_counter() - started,
        "train_pixels": result.train_pixels,
        "miou": result.miou,
    }


def _child(args, mode: str, n_train: int) -> dict | None:
    cmd = [sys.executable, __file__, "--child", mode, "--root", str(Path(args.work) / f"n{n_train}"),
           "--n-train", str(n_train), *args.passthrough]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1]) if mode == "run" else None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2,4,8,16", help="numbers of training images")
    parser.add_argument("--n-test", type=int, default=2)
    parser.add_argument("--size", type=int, default=64, help="S: features/labels resized to S² (paper 256)")
    parser.add_argument("--channels", type=int, default=512, help="total channels (split over 2 layers)")
    parser.add_argument("--native", type=int, default=16, help="native feature resolution")
    parser.add_argument("--buffer-mb", type=float, default=32.0)
    parser.add_argument("--max-batches", type=int, help="cap batches per epoch (default: full epoch)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the measured process")
    parser.add_argument("--paper-shape", action="store_true", help="30 images × 256² × 3840 ch fp16 (Ours-XL)")
    parser.add_argument("--work", help="folder for the synthetic data (default: a temporary folder)")
    parser.add_argument("--child", choices=["prepare", "run"], help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--n-train", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--layers-json", help=argparse.SUPPRESS)
    parser.add_argument("--dtype", default="float32", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.paper_shape:
        args.sizes, args.size, args.buffer_mb = "30", 256, 1024.0
        args.max_batches = args.max_batches or 100
        args.n_test, args.dtype = 1, "float16"
        layers = {"up-level0-repeat0-vit-block5-out": (1280, 32), "up-level0-repeat0-vit-block7-out": (1280, 32),
                  "up-level1-repeat0-vit-block0-cross-q": (640, 64), "up-level1-repeat0-vit-block0-out": (640, 64)}
    else:
        half = args.channels // 2
        layers = {"layer-a": (half, args.native), "layer-b": (args.channels - half, args.native // 2)}
    if args.layers_json:
        layers = {k: tuple(v) for k, v in json.loads(args.layers_json).items()}

    if args.child == "prepare":
        prepare(Path(args.root), args.n_train, args.n_test, args.size, layers, 21, args.dtype)
        return 0
    if args.child == "run":
        print(json.dumps(run(Path(args.root), args.size, args.buffer_mb, args.max_batches, args.epochs, args.threads)))
        return 0

    channels = sum(c for c, _ in layers.values())
    args.passthrough = ["--n-test", str(args.n_test), "--size", str(args.size), "--buffer-mb", str(args.buffer_mb),
                        "--epochs", str(args.epochs), "--threads", str(args.threads), "--layers-json", json.dumps(layers), "--dtype", args.dtype,
                        *(["--max-batches", str(args.max_batches)] if args.max_batches else [])]
    tmp = None
    if not args.work:
        tmp = tempfile.TemporaryDirectory(prefix="bench-scarce-")
        args.work = tmp.name
    print(f"S={args.size}  C={channels}  buffer={args.buffer_mb:g} MiB  test images={args.n_test}")
    print(f"{'N train':>8} {'train px':>10} {'upstream N×S²×C f32':>20} {'peak RSS':>10} {'seconds':>8}")
    worst = 0.0
    for n in [int(v) for v in args.sizes.split(",")]:
        _child(args, "prepare", n)
        res = _child(args, "run", n)
        upstream = n * args.size**2 * channels * 4
        worst = max(worst, res["peak_rss"] / GIB)
        print(f"{n:>8} {res['train_pixels']:>10} {upstream / GIB:>17.2f} GiB {res['peak_rss'] / GIB:>6.2f} GiB "
              f"{res['seconds']:>8.1f}", flush=True)
    if tmp is not None:
        tmp.cleanup()
    if args.paper_shape:
        verdict = "OK" if worst <= PAPER_LIMIT_GIB else "FAIL"
        print(f"paper shape peak RSS {worst:.2f} GiB (limit {PAPER_LIMIT_GIB:g} GiB): {verdict}")
        return 0 if worst <= PAPER_LIMIT_GIB else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
