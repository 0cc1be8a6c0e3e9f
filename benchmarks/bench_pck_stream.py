"""The NN PCK screen (or the property maps) with and without a feature store (issue #19, point 2), timed in one
run on one machine.

    store     ``diffact extract`` of the pool into a store, then ``diffact pck-screen --store`` (the workflow today:
              two processes, the model loaded once)
    stream    ``diffact pck-screen`` with the extraction arguments instead of ``--store`` (one process, no store)

``--task property-maps`` times ``diffact property-maps`` the same way on a DDPM-seg-layout ``--dataset-root``
(``--images`` first images, as the workflow's ``properties.images``).

Both run as the workflow runs them (separate ``diffact`` processes, model loads and imports included), alternating,
``--repeats`` times; the two CSVs must be byte-identical. Prints the median wall time of each, the store's size on
disk, and the stream's extraction count and cache peak (from its log).

    python benchmarks/bench_pck_stream.py --model results/models/sd15-tiny --family sd15 --layers screen \\
        --dataset-root results/data/spair-demo [--image-size 64 --batch-size 4 --eval-size 64 --repeats 3]
    python benchmarks/bench_pck_stream.py --task property-maps --dataset-root results/data/seg-simple --images 6

Without ``--model``, the demo's sd15 U-Net with random weights is built in the work folder (the same compute as
the trained demo model).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(args: list, log: Path | None = None) -> float:
    start = time.perf_counter()
    prefix = [sys.executable, "-m", "diffact.cli"] + (["--log", str(log)] if log else [])
    subprocess.run(prefix + [str(a) for a in args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def folder_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="pipeline folder (default: the demo sd15 U-Net, random weights)")
    parser.add_argument("--task", default="pck-screen", choices=["pck-screen", "property-maps"])
    parser.add_argument("--family", default="sd15")
    parser.add_argument("--layers", default="screen")
    parser.add_argument("--dataset-root", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--eval-size", type=int, default=64)
    parser.add_argument("--images", type=int, default=6, help="property-maps: first N images")
    parser.add_argument("--pairs", type=int, default=2000, help="property-maps: same-label pixel pairs")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--buffer-mb", type=float, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", help="work folder (default: a temporary one, removed)")
    args = parser.parse_args()

    work = Path(args.work or tempfile.mkdtemp(prefix="bench_pck_stream_"))
    work.mkdir(parents=True, exist_ok=True)
    model = args.model
    if model is None:
        from diffact.models.demo import random_init_pipeline, save_pipeline

        model = str(save_pipeline(random_init_pipeline(args.family, seed=0), work / "model"))
    kind, split = ("spair", ["--split", args.split]) if args.task == "pck-screen" else ("ddpmseg", [])
    extraction = ["--model", model, "--family", args.family, "--layers", args.layers, "--dataset-kind", kind,
                  "--dataset-root", args.dataset_root, *split, "--image-size", args.image_size,
                  "--batch-size", args.batch_size, "--prompt", "a photo", "--torch-threads", args.threads,
                  "--device", "cpu"]
    if args.task == "pck-screen":
        store_read = ["--dataset-root", args.dataset_root, *split, "--eval-size", args.eval_size, "--model-name",
                      "bench"]
        options = ["--eval-size", args.eval_size, "--model-name", "bench", "--buffer-mb", args.buffer_mb]
    else:
        store_read = options = ["--labels-root", args.dataset_root, "--images", args.images, "--pairs", args.pairs]
    common = ["--threads", args.threads]
    times: dict[str, list[float]] = {"store": [], "stream": []}
    store_bytes = 0
    for repeat in range(args.repeats):
        store = work / f"store-{repeat}"
        times["store"].append(run(["extract", *extraction, "--out", store])
                              + run([args.task, "--store", store, *store_read, *common, "--out", work / "store.csv"]))
        store_bytes = folder_bytes(store)
        shutil.rmtree(store)
        log = work / "stream.log"
        times["stream"].append(run([args.task, *extraction, *options, *common, "--out", work / "stream.csv"], log=log))
        if (work / "store.csv").read_bytes() != (work / "stream.csv").read_bytes():
            print("the two CSVs differ", file=sys.stderr)
            return 1
    streamed = [line for line in log.read_text().splitlines() if "image extractions" in line]
    for name, values in times.items():
        print(f"{name:>7}: median {statistics.median(values):6.1f} s over {len(values)} runs "
              f"({', '.join(f'{v:.1f}' for v in values)})")
    print(f"  store: {store_bytes / 2**20:.1f} MB on disk"
          + (f"; stream: {streamed[-1].split(': ', 1)[-1]}" if streamed else ""))
    print("CSVs byte-identical")
    if not args.work:
        shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
