"""Table 1 (semantic correspondence on SPair-71k, PCK@0.1 img / bbox): our rows beside the paper's.

Our rows come from ``diffact corr-evaluate`` (one CSV per entry × method × protocol); entries that
cannot run on the profile (:mod:`.plan`) become rows that say why. The paper's numbers are data in
``diffact/data/reference/paper_table1.csv`` (docs/paper.md §1 Table 1) and are joined on (family, layer set) for
single-model rows (legacy → Legacy-v1.5 / Legacy-XL, practical → Ours-v1.5 / Ours-XL) and on the
configured ``paper_method`` for combinations (Ours-XL-t). The paper's protocol is ``trained`` +
``paper`` (max over checkpoints on val-360); the other rows have no paper counterpart, but the paper
column is shown beside every row of the same entry so the gap is visible.
"""

from __future__ import annotations

from importlib import resources
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from diffact.tasks.correspondence.pck import PER_IMAGE
from diffact.utils.errors import DataError

REFERENCE_FILES = ("paper_table1.csv", "paper_figure1.csv", "paper_figure4.csv")
HEADLINE = ("pck_img@0.10", "pck_bbox@0.10")
ROW_KEYS = ["entry", "layer_set", "models", "families", "extracted_sets", "method", "protocol"]


def paper_reference(name: str = "paper_table1.csv") -> pd.DataFrame:
    """One of the paper's reported-number tables shipped with diffact (``diffact/data/reference``)."""
    path = resources.files("diffact.data") / "reference" / name
    if not path.is_file():
        raise DataError(f"reference table {name} is not installed with diffact (looked for {path})")
    with resources.as_file(path) as file:
        return pd.read_csv(file, comment="#", keep_default_na=True, dtype={"family": str, "layer_set": str})


def unavailable_rows(entries: Iterable[Mapping], methods: Sequence[str], protocols: Sequence[str]) -> pd.DataFrame:
    """One row per (entry that cannot run, method, protocol) with NaN scores and the reason as note."""
    rows = []
    for entry in entries:
        if not entry.get("unavailable"):
            continue
        for method in methods:
            for protocol in protocols:
                rows.append({
                    "entry": entry["name"], "layer_set": entry["layer_set"],
                    "models": "+".join(m for m, _ in entry["parts"]), "families": "+".join(entry["families"]),
                    "extracted_sets": "+".join(s for _, s in entry["parts"]), "method": method, "protocol": protocol,
                    "status": "unavailable", "note": f"not run: {entry['unavailable']}",
                    "paper_method": entry.get("paper_method", ""),
                })
    return pd.DataFrame(rows)


def attach_paper_numbers(table: pd.DataFrame, reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """Add ``paper_method`` and ``paper_pck_img@0.10`` / ``paper_pck_bbox@0.10`` beside our rows.

    Single-model rows match the reference on (family, layer set); rows that already carry a
    ``paper_method`` (combinations) match on it. Rows without a paper counterpart get NaN."""
    reference = paper_reference() if reference is None else reference
    table = table.copy()
    if "paper_method" not in table.columns:
        table["paper_method"] = ""
    table["paper_method"] = table["paper_method"].fillna("").astype(str)
    by_family_set = {(str(r.family), str(r.layer_set)): r.method for r in reference.itertuples()
                     if isinstance(r.family, str) and "+" not in r.family}
    for i, row in table.iterrows():
        if not table.at[i, "paper_method"]:
            table.at[i, "paper_method"] = by_family_set.get((str(row.get("families", "")), str(row.get("layer_set", ""))), "")
    values = reference.set_index("method")
    for column in HEADLINE:
        table[f"paper_{column}"] = [float(values.at[m, column]) if m in values.index else np.nan for m in table["paper_method"]]
    return table


def build_table1(results: Sequence[pd.DataFrame], unavailable: pd.DataFrame | None = None,
                 reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """Our result rows (+ rows for entries that did not run), sorted by entry, set, method, protocol,
    with the paper's numbers beside them."""
    frames = [f for f in results if not f.empty]
    if unavailable is not None and not unavailable.empty:
        frames.append(unavailable)
    if not frames:
        raise DataError("Table 1 has no rows: no results and no unavailable entries")
    table = pd.concat(frames, ignore_index=True)
    if "status" not in table.columns:
        table["status"] = "ok"
    table["status"] = table["status"].fillna("ok")
    table = attach_paper_numbers(table, reference)
    order = {"nn": 0, "trained": 1, "paper": 0, "heldout": 1}
    table = table.sort_values(
        ["entry", "layer_set", "method", "protocol"],
        key=lambda s: s.map(order).fillna(0) if s.name in ("method", "protocol") else s, kind="stable",
    ).reset_index(drop=True)
    # Each headline number (pooled over keypoints, the paper's) with its per-image twin (DIFT/GeoAware's) beside it.
    headline = [name for c in HEADLINE for name in (c, c + PER_IMAGE)]
    first = [c for c in ROW_KEYS + ["status", "eval_split", "eval_subset", "noise", "noise_draws", *headline, "paper_method",
                                    *(f"paper_{c}" for c in HEADLINE)] if c in table.columns]
    return table[first + [c for c in table.columns if c not in first]]
