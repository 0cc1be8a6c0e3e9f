"""Time of one pair's NN keypoint search (paper §2.8: bilinear upsampling to 512², L2-normalised channels,
argmax of cosine similarity), ``diffact.tasks.correspondence.matching.nn_transfer`` against the computation
written plainly (upsample the target fully with ``F.interpolate``, normalise, one matmul), on activation
shapes of the paper's models. Both are timed alternately in one run; the ratio is what to read.

    python benchmarks/bench_matching.py [--keypoints 20] [--repeats 5] [--threads 2]

The NN screen (``diffact pck-screen``) runs this once per pair and activation: 164 activations × the SPair pairs
for SD1.5's pool, 279 for SDXL's. Results go to ``--out`` (default ``results/bench``): ``matching.{csv,md}``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from diffact.tasks.correspondence.matching import keypoints_to_eval_pixels, nn_transfer, sample_descriptors

# (model, activation, C, side): SD1.5 at 512 px (64² latents), SDXL at 1024 px (128² latents).
SHAPES = [
    ("sd15", "up-level1 vit out", 1280, 16),
    ("sd15", "up-level2 vit out", 640, 32),
    ("sd15", "up-level3 vit out", 320, 64),
    ("sdxl", "up-level0 vit out", 1280, 32),
    ("sdxl", "up-level2 res out", 320, 128),
    ("sdxl", "up-level1 ffn inner", 5120, 64),
]
EVAL_SIZE = 512
IMAGE_SIZE = (500, 375)


def plain_transfer(src: torch.Tensor, trg: torch.Tensor, kps: np.ndarray) -> np.ndarray:
    """The reference: the full C×S×S upsampled, normalised target, then all similarities at once."""
    pixels = keypoints_to_eval_pixels(kps, IMAGE_SIZE, EVAL_SIZE)
    descriptors = F.normalize(sample_descriptors(src, pixels, EVAL_SIZE), dim=1)
    full = F.interpolate(trg[None], (EVAL_SIZE, EVAL_SIZE), mode="bilinear", align_corners=False)[0]
    full = F.normalize(full.reshape(full.shape[0], -1), dim=0)
    return (descriptors @ full).argmax(dim=1).numpy()


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keypoints", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="results/bench")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    kps = rng.uniform(0, 370, size=(args.keypoints, 2))
    rows = []
    for model, name, channels, side in SHAPES:
        g = torch.Generator().manual_seed(0)
        src, trg = torch.randn(channels, side, side, generator=g), torch.randn(channels, side, side, generator=g)
        ours, plain = [], []
        for _ in range(args.repeats):  # alternate, so both see the same machine state
            ours.append(seconds(lambda: nn_transfer(src, trg, kps, IMAGE_SIZE, IMAGE_SIZE, EVAL_SIZE)))
            plain.append(seconds(lambda: plain_transfer(src, trg, kps)))
        row = {"model": model, "activation": name, "channels": channels, "side": side,
               "nn_transfer_s": statistics.median(ours), "plain_s": statistics.median(plain)}
        row["speedup"] = row["plain_s"] / row["nn_transfer_s"]
        rows.append(row)
        print(f"{model} {name:20s} {channels:5d}×{side}²: nn_transfer {row['nn_transfer_s']:.3f} s, "
              f"plain {row['plain_s']:.3f} s, ×{row['speedup']:.1f}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import pandas as pd

    table = pd.DataFrame(rows)
    table.to_csv(out / "matching.csv", index=False)
    (out / "matching.md").write_text(table.to_markdown(index=False, floatfmt=".3f") + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
