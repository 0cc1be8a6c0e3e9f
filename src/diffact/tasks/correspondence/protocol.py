"""How one correspondence number is reported: the ``paper`` and ``heldout`` protocols (docs/paper.md §2.8, §4).

* ``paper`` — what the paper's code does: evaluate on SPair's ``val-360`` (DHF's file; on the demo the
  ``val`` split with the deterministic subset rule) after every checkpoint and report the **maximum over
  checkpoints**, taken separately for every metric (upstream ``max1 = max(max1, r1)``,
  ``max2 = max(max2, r2)``: the img and bbox maxima may come from different checkpoints).
* ``heldout`` — a clean protocol: **select** one checkpoint by its validation score (``select_metric``,
  earliest step on ties) and report that checkpoint **once on the test split** (``test-360``).

Without training (``nn``) there is nothing to select: ``paper`` scores the validation pairs and
``heldout`` the test pairs.
"""

from __future__ import annotations

from typing import Callable, Mapping

import pandas as pd

from diffact.utils.errors import ConfigError, DataError

PROTOCOLS: tuple[str, ...] = ("paper", "heldout")
METHODS: tuple[str, ...] = ("nn", "trained")
DEFAULT_SELECT_METRIC = "pck_img@0.10"  # the paper's headline number (Table 1 first column)


def check_protocol(protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown correspondence protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")
    return protocol


def check_method(method: str) -> str:
    if method not in METHODS:
        raise ConfigError(f"unknown correspondence method {method!r}; expected one of {', '.join(METHODS)}")
    return method


def evaluation_split(protocol: str) -> str:
    """The split a protocol reports on: ``val`` for paper, ``test`` for heldout."""
    return "val" if check_protocol(protocol) == "paper" else "test"


def _metric_columns(evaluations: pd.DataFrame) -> list[str]:
    return [c for c in evaluations.columns if c.startswith("pck_")]


def _check_evaluations(evaluations: pd.DataFrame, metric: str | None = None, where: str = "evaluations") -> None:
    if evaluations.empty:
        raise DataError(f"{where}: no evaluations (training ended before the first evaluation step)")
    if "step" not in evaluations.columns:
        raise DataError(f"{where}: column 'step' is missing")
    if not _metric_columns(evaluations):
        raise DataError(f"{where}: no PCK columns (pck_img@0.10, ...)")
    if metric is not None and metric not in evaluations.columns:
        raise ConfigError(f"{where}: select metric {metric!r} is not a column; have {', '.join(_metric_columns(evaluations))}")


def paper_result(evaluations: pd.DataFrame, where: str = "evaluations") -> dict:
    """The paper's number: every PCK column's maximum over checkpoints, separately, plus the step each
    maximum came from (``step_<column>``, earliest on ties) and the evaluation-set size. The per-image
    columns (``pck_img@0.10_per_image``) get their own maximum, as every other metric does."""
    _check_evaluations(evaluations, where=where)
    ordered = evaluations.sort_values("step", kind="stable").reset_index(drop=True)
    result: dict = {}
    for column in _metric_columns(ordered):
        best = ordered[column].idxmax()  # first maximum = earliest step
        result[column] = float(ordered.at[best, column])
        result[f"step_{column}"] = int(ordered.at[best, "step"])
    for column in ("n_pairs", "n_keypoints"):
        if column in ordered.columns:
            result[column] = int(ordered[column].iloc[0])
    result["n_checkpoints"] = len(ordered)
    return result


def select_checkpoint(evaluations: pd.DataFrame, metric: str = DEFAULT_SELECT_METRIC, where: str = "evaluations") -> Mapping:
    """The evaluation row with the best validation ``metric`` (earliest step on ties)."""
    _check_evaluations(evaluations, metric, where)
    ordered = evaluations.sort_values("step", kind="stable").reset_index(drop=True)
    return ordered.loc[ordered[metric].idxmax()].to_dict()


def heldout_result(evaluations: pd.DataFrame, evaluate_step: Callable[[Mapping], Mapping],
                   metric: str = DEFAULT_SELECT_METRIC, where: str = "evaluations") -> dict:
    """Select a checkpoint on validation, then report ``evaluate_step(selected row)`` (its test scores)
    once. The result also says which step was selected, by what and its validation score."""
    selected = select_checkpoint(evaluations, metric, where)
    result = dict(evaluate_step(selected))
    result.update({"step": int(selected["step"]), "selected_by": metric, f"val_{metric}": float(selected[metric]),
                   "n_checkpoints": len(evaluations)})
    return result
