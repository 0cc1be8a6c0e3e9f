"""The quantitative comparison of activations and the composition of a feature set (paper §5 steps 3–4,
Tables 3–6). Pure functions on pandas DataFrames; the scores come from ``diffact scarce-screen`` runs.

Vocabulary:

* a *scores* frame has one row per activation, in forward order: ``activation``, ``simple``, ``complex``
  (mIoU % of that activation alone on the simple and the complex dataset; optional ``simple_std``/``complex_std``);
* a *resolution* is the stage level an activation belongs to (``up-level0`` …), the grouping of Tables 4–6
  (upsamplers are listed under their own level, as in the paper);
* *channels* maps activation → channel count (a feature store's ``shape(name)[0]``).
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

SCENES = ("simple", "complex")
_LEVEL = re.compile(r"^(?P<stage>up|down)-level(?P<level>\d+)-")

# Which table/columns of the paper's Tables 4–6 belong to which model (paper App. D.2).
PAPER_COLUMNS = {
    "sdxl": ((4, 5), "sdxl_or_sd15"),
    "pgv2": ((4, 5), "pgv2"),
    "sd15": ((6,), "sdxl_or_sd15"),
}
# Channel totals of the paper's feature sets (docs/paper.md §2.6): legacy = the up-resolution outputs
# (Baranchuk-style), practical = "Ours" (App. B.1/B.2).
LEGACY_CHANNELS = {"sd15": 3520, "sdxl": 2240}
PRACTICAL_CHANNELS = {"sd15": 3520, "sdxl": 3840}
# Table 3: label-scarce mIoU of the generic SDXL set vs a set chosen from the simple-scene ranking only.
PAPER_TABLE3 = {"generic": {"simple": 63.34, "complex": 47.55}, "specific": {"simple": 63.70, "complex": 45.41}}
# Table 3's settings in row order. "generic" is composed from our own screens (``compose_generic``);
# "paper-generic" is the paper's fixed generic set itself (Ours-XL, config/layers/sdxl/practical.yaml), so the row
# stays comparable with the paper's 63.34 / 47.55 when our ranking picks other activations.
TABLE3_SETTINGS = ("generic", "paper-generic", "specific")
PAPER_TABLE3_ROW = {"generic": "generic", "paper-generic": "generic", "specific": "specific"}


def resolution_of(activation: str) -> str:
    """``up-level1-repeat0-vit-block0-cross-q`` → ``up-level1``; mid-block names → ``mid``; others → ``other``."""
    match = _LEVEL.match(activation)
    if match:
        return f"{match['stage']}-level{match['level']}"
    return "mid" if activation.startswith("mid-") else "other"


def is_vit_internal(activation: str) -> bool:
    """True for activations inside a ViT module (block outputs, attention q/k, FFN, ViT output)."""
    return "-vit-" in activation or activation.endswith("-vit-out")


def paper_reference(model: str) -> pd.DataFrame:
    """The paper's per-activation scores for ``model`` (sdxl, pgv2 or sd15) from Tables 4–6:
    columns ``activation``, ``table``, ``resolution``, ``paper_simple``, ``paper_complex``."""
    from diffact.data.reference import paper_tables_4_6

    if model not in PAPER_COLUMNS:
        raise KeyError(f"no paper table for model {model!r}; expected one of {', '.join(PAPER_COLUMNS)}")
    tables, prefix = PAPER_COLUMNS[model]
    raw = paper_tables_4_6()
    raw = raw[raw["table"].isin(tables)]
    out = pd.DataFrame({
        "activation": raw["activation_id"].astype(str).values,
        "table": raw["table"].values,
        "paper_simple": raw[f"{prefix}_simple"].values,
        "paper_complex": raw[f"{prefix}_complex"].values,
    })
    out["resolution"] = out["activation"].map(resolution_of)
    return out.reset_index(drop=True)


def scores_from_screens(simple: pd.DataFrame, complex_: pd.DataFrame) -> pd.DataFrame:
    """Join two ``scarce-screen`` CSVs (columns ``activation``, ``miou_mean``, ``miou_std``) into a scores frame.

    Activations screened on only one dataset keep NaN for the other. Order: the simple screen's order (forward
    order when the screen ran in store order), then any activations only in the complex screen.
    """
    def part(frame: pd.DataFrame, scene: str) -> pd.DataFrame:
        cols = {"miou_mean": scene, "miou_std": f"{scene}_std"}
        keep = ["activation", *[c for c in cols if c in frame.columns]]
        extra = ["channels"] if "channels" in frame.columns else []
        return frame[keep + extra].rename(columns=cols)

    left, right = part(simple, "simple"), part(complex_, "complex")
    if "channels" in left.columns and "channels" in right.columns:
        right = right.drop(columns="channels")
    merged = left.merge(right, on="activation", how="outer", sort=False)
    order = {name: i for i, name in enumerate([*simple["activation"], *complex_["activation"]])}
    merged["_order"] = merged["activation"].map(lambda a: order[a])
    return merged.sort_values("_order", kind="stable").drop(columns="_order").reset_index(drop=True)


def rank_per_resolution(scores: pd.DataFrame, paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """Tables 4–6 analogue: each activation's score and rank within its resolution (1 = best; ties share the
    best rank), in the input (forward) order, with the paper's score and rank beside ours where the activation id
    matches a row of ``paper`` (from :func:`paper_reference`; its ranks are within the paper's full table)."""
    out = scores.copy()
    out["resolution"] = out["activation"].map(resolution_of)
    for scene in SCENES:
        if scene in out.columns:
            out[f"rank_{scene}"] = out.groupby("resolution", sort=False)[scene].rank(
                ascending=False, method="min").astype("Int64")
    if paper is not None:
        ref = paper.copy()
        if "resolution" not in ref.columns:
            ref["resolution"] = ref["activation"].map(resolution_of)
        for scene in SCENES:
            ref[f"paper_rank_{scene}"] = ref.groupby("resolution", sort=False)[f"paper_{scene}"].rank(
                ascending=False, method="min").astype("Int64")
        cols = ["activation", *[f"paper_{s}" for s in SCENES], *[f"paper_rank_{s}" for s in SCENES]]
        out = out.merge(ref[cols], on="activation", how="left", sort=False)
    first = {res: i for i, res in enumerate(dict.fromkeys(out["resolution"]))}
    out["_res"] = out["resolution"].map(first)
    out = out.sort_values("_res", kind="stable").drop(columns="_res").reset_index(drop=True)
    front = ["resolution", "activation"]
    return out[front + [c for c in out.columns if c not in front]]


def rank_agreement(ranked: pd.DataFrame, min_rows: int = 3) -> pd.DataFrame:
    """Per resolution and scene: Spearman correlation between our scores and the paper's over the activations
    both have (NaN when fewer than ``min_rows`` match)."""
    rows = []
    for res, group in ranked.groupby("resolution", sort=False):
        for scene in SCENES:
            if scene not in group or f"paper_{scene}" not in group:
                continue
            pair = group[[scene, f"paper_{scene}"]].dropna()
            rho = pair[scene].corr(pair[f"paper_{scene}"], method="spearman") if len(pair) >= min_rows else np.nan
            rows.append({"resolution": res, "scene": scene, "matched": len(pair), "spearman": rho})
    return pd.DataFrame(rows, columns=["resolution", "scene", "matched", "spearman"])


def format_ranking(ranked: pd.DataFrame, digits: int = 2) -> str:
    """Plain-text tables, one per resolution: ours beside the paper's, like Tables 4–6."""
    blocks = []
    for res, group in ranked.groupby("resolution", sort=False):
        cols = [c for c in ("activation", "simple", "rank_simple", "paper_simple", "paper_rank_simple",
                            "complex", "rank_complex", "paper_complex", "paper_rank_complex") if c in group]
        body = group[cols].to_string(index=False, float_format=lambda v: f"{v:.{digits}f}", na_rep="-")
        blocks.append(f"== {res} ({len(group)} activations) ==\n{body}")
    return "\n\n".join(blocks)


def _best(candidates: pd.DataFrame, key: str, tiebreak: str | None) -> str | None:
    """Best activation by ``key``; ties → higher ``tiebreak`` score, then the *later* activation in forward order
    (on the paper's exact tie block3-out = block7-out at SDXL up-level0, the paper picked block7-out)."""
    frame = candidates.dropna(subset=[key])
    if frame.empty:
        return None
    frame = frame.assign(_pos=np.arange(len(frame)))
    sort_cols = [key] + ([tiebreak] if tiebreak and tiebreak in frame else []) + ["_pos"]
    return str(frame.sort_values(sort_cols, ascending=False, kind="stable").iloc[0]["activation"])


def _selection(scores: pd.DataFrame, picks: list[tuple[str, str]], channels: Mapping[str, int]) -> pd.DataFrame:
    by_name = scores.set_index("activation")
    rows = []
    for name, reason in picks:
        row = {"activation": name, "resolution": resolution_of(name), "channels": int(channels[name]), "reason": reason}
        for scene in SCENES:
            if scene in by_name.columns:
                row[scene] = by_name.at[name, scene]
        rows.append(row)
    out = pd.DataFrame(rows, columns=["activation", "resolution", "channels", "reason",
                                      *[s for s in SCENES if s in by_name.columns]])
    out.attrs["total_channels"] = int(out["channels"].sum()) if len(out) else 0
    return out


def fixed_selection(scores: pd.DataFrame, names: Sequence[str], channels: Mapping[str, int],
                    reason: str) -> pd.DataFrame:
    """A set given by name (e.g. the paper's Ours-XL) in the columns of a composed set; its activations' scores where
    they were screened (NaN where the qualitative filter dropped one). ``channels`` must name every activation."""
    missing = [n for n in names if n not in channels]
    if missing:
        raise KeyError(f"no channel count for {', '.join(missing)}: not in the feature store")
    known = scores[scores["activation"].isin(names)]
    absent = pd.DataFrame({"activation": [n for n in names if n not in set(known["activation"])]})
    frame = pd.concat([known, absent], ignore_index=True)
    return _selection(frame, [(n, reason) for n in names], channels)


def _resolutions(scores: pd.DataFrame, resolutions: Sequence[str] | None) -> list[str]:
    present = list(dict.fromkeys(scores["activation"].map(resolution_of)))
    return [r for r in (resolutions or present) if r in present]


def compose_generic(scores: pd.DataFrame, channels: Mapping[str, int], budget: int,
                    resolutions: Sequence[str] | None = None) -> pd.DataFrame:
    """Paper §5 step 4 ("generic" set): per kept resolution, the best activation for complex scenes and the best
    for simple scenes, then fill the channel budget.

    The paper states the goal (best per resolution for simple and complex scenes, ~4 activations, mostly from
    ViTs, total channels about the legacy set's) but not a procedure; this rule is our reading [I]:

    1. resolutions in forward order (default: all present; pass e.g. ``["up-level0", "up-level1"]``);
    2. in each, add the best-for-complex, then the best-for-simple activation, each only if it fits the budget;
    3. fill what budget is left from the kept resolutions: ViT-internal activations first ("mostly from ViTs"),
       then by the mean of the two scores.

    On the paper's own Tables 4–6 this returns exactly Ours-v1.5 (budget 3520) and Ours-XL (budget 3840).
    """
    picks: list[tuple[str, str]] = []
    used = 0
    kept = _resolutions(scores, resolutions)
    for res in kept:
        group = scores[scores["activation"].map(resolution_of) == res]
        for scene, other in (("complex", "simple"), ("simple", "complex")):
            best = _best(group, scene, other)
            if best is None:
                continue
            if best in [p[0] for p in picks]:
                picks = [(n, f"{r}+{scene}" if n == best else r) for n, r in picks]
                continue
            if used + channels[best] <= budget:
                picks.append((best, f"best {scene}"))
                used += channels[best]
    pool = scores[scores["activation"].map(resolution_of).isin(kept) & ~scores["activation"].isin([p[0] for p in picks])]
    pool = pool.assign(_vit=pool["activation"].map(is_vit_internal), _mean=pool[list(SCENES)].mean(axis=1),
                       _pos=np.arange(len(pool)))
    for name in pool.sort_values(["_vit", "_mean", "_pos"], ascending=[False, False, True], kind="stable")["activation"]:
        if used + channels[name] <= budget:
            picks.append((name, "fill"))
            used += channels[name]
    return _selection(scores, picks, channels)


def compose_specific(scores: pd.DataFrame, channels: Mapping[str, int], budget: int, scene: str = "simple",
                     resolutions: Sequence[str] | None = None, per_resolution: int = 2) -> pd.DataFrame:
    """Table 3's "specific" set: chosen from one scene's ranking only — per kept resolution the optimal and the
    next (slightly sub-optimal) activations by that scene's score, within the same channel budget as the generic
    set. Ties go to the later activation in forward order (the other scene's score is deliberately not used)."""
    if scene not in SCENES:
        raise ValueError(f"scene must be one of {SCENES}, got {scene!r}")
    picks: list[tuple[str, str]] = []
    used = 0
    for res in _resolutions(scores, resolutions):
        group = scores[scores["activation"].map(resolution_of) == res]
        for k in range(per_resolution):
            best = _best(group[~group["activation"].isin([p[0] for p in picks])], scene, None)
            if best is None:
                break
            if used + channels[best] <= budget:
                picks.append((best, f"{scene} #{k + 1}"))
                used += channels[best]
    return _selection(scores, picks, channels)


def generic_vs_specific(results: pd.DataFrame) -> pd.DataFrame:
    """Table 3 analogue. ``results``: rows with ``setting`` (generic / paper-generic / specific), ``scene``
    (simple/complex), ``miou_mean`` (and optionally ``miou_std``). Returns one row per setting present, in
    :data:`TABLE3_SETTINGS` order, plus "specific − generic", with our mIoU per scene and the paper's beside it (the
    paper's generic row beside both of our generic rows)."""
    table = results.pivot_table(index="setting", columns="scene", values="miou_mean", aggfunc="first")
    rows = []
    for setting in TABLE3_SETTINGS:
        if setting not in table.index:
            continue
        row = {"setting": setting}
        for scene in SCENES:
            row[scene] = table.at[setting, scene] if scene in table.columns else np.nan
            row[f"paper_{scene}"] = PAPER_TABLE3[PAPER_TABLE3_ROW[setting]][scene]
        rows.append(row)
    out = pd.DataFrame(rows)
    if {"generic", "specific"} <= set(out.get("setting", [])):
        g, s = out.set_index("setting").loc["generic"], out.set_index("setting").loc["specific"]
        delta = {"setting": "specific - generic"}
        for col in out.columns[1:]:
            delta[col] = s[col] - g[col]
        out = pd.concat([out, pd.DataFrame([delta])], ignore_index=True)
    return out
