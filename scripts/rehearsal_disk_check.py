"""The budget's bytes per stored image against the rehearsal's measured ones, then the paper's disk total from both.

    python scripts/rehearsal_disk_check.py results/rehearsal

For every feature store the rehearsal wrote (dataset, model, layer set), the measured bytes per image are the
store's per-image files' mean size; the budget (`diffact budget --config config/paper.yaml --json`) holds
the computed bytes per image of the same (model, layer set) at the same resolution. Prints both per store, and the
paper's feature-store disk total with the measured figure substituted wherever the rehearsal has one.
"""

import json
import subprocess
import sys
from pathlib import Path


def measured_stores(results: Path) -> dict[tuple[str, str, str], float]:
    found = {}
    for meta in sorted(results.glob("features/*/*/*/meta.json")):
        store = meta.parent  # finished or not: every written image file counts (one safetensors file per image)
        shards = list(store.rglob("*.safetensors"))
        if shards:
            layer_set = store.name.rsplit("-", 1)[0]
            found[(store.parent.parent.name, store.parent.name, layer_set)] = sum(p.stat().st_size for p in shards) / len(shards)
    return found


def main(results: str) -> None:
    budget = json.loads(subprocess.run([sys.executable, "-m", "diffact.cli", "budget", "--config", "config/paper.yaml",
                                        "--json"], capture_output=True, text=True, check=True).stdout)
    measured = measured_stores(Path(results))
    per_set = {}
    for (dataset, model, layer_set), size in measured.items():
        per_set.setdefault((model, layer_set), size)
    print("| dataset | model | set | computed B/img | measured B/img | measured/computed |\n|---|---|---|---|---|---|")
    paper_computed = paper_measured = 0
    for store in budget["stores"]:
        key = (store["model"], store["layer_set"])
        size = per_set.get(key)
        paper_computed += store["disk_bytes"]
        paper_measured += store["images"] * size if size else store["disk_bytes"]
        if (store["dataset"], *key) in measured:
            got = measured[(store["dataset"], *key)]
            print(f"| {store['dataset']} | {key[0]} | {key[1]} | {store['bytes_per_image']} | {got:.0f} | "
                  f"{got / store['bytes_per_image']:.4f} |")
    covered = sum(1 for s in budget["stores"] if (s["model"], s["layer_set"]) in per_set)
    print(f"\nfeature stores of the paper profile: {len(budget['stores'])}, {covered} with a measured bytes/image")
    print(f"paper feature-store disk: budget {paper_computed / 1e12:.3f} TB, with measured bytes/image "
          f"{paper_measured / 1e12:.3f} TB (ratio {paper_measured / paper_computed:.4f}); budget total "
          f"{budget['total']['disk_bytes'] / 1e12:.3f} TB")


if __name__ == "__main__":
    main(sys.argv[1])
