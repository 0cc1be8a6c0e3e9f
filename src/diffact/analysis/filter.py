"""The paper's qualitative filter as code (paper §5.1; docs/paper.md §5 step 2).

The three universal properties (paper §4) decide which candidate activations are worth the expensive
quantitative comparison. The paper states the filter in words [T §5.1]:

  (a) keep only the **early half of the up-stage** (the down-stage and the late up-stage are noisy: P1);
  (b) drop self-attention q/k there (locality without positional embeddings degrades them: P3, Fig 4b);
  (c) but keep self-attention q/k from the **late half** (locality suppresses the noise there: Fig 4c);
  (d) drop every increment (ResModule increment, FFN inner, self-attention v: high-frequency noise, Fig 16).

Where the words leave freedom, the rules below are read off what Tables 4–6 list as kept [I]:

* the up-stage considered is its ``n_up_levels`` highest-resolution levels (3 for both models); SD1.5's
  fourth, lowest level (up-level0, 8²) is "inferior" and ignored [T];
* the halves are taken over that window's ResModule/ViT *repeats* in forward order (3 levels × 3 repeats = 9);
  a level (resolution) is kept whole when it *starts* in the early half (SDXL up-level0/1, SD1.5 up-level1/2), and
  "late half" q/k are those of repeats whose centre lies past the middle (SDXL up-level1-repeat2; SD1.5
  up-level2-repeat2 and up-level3);
* which self-attention activations count as late-half q/k differs by family: SDXL keeps only self-k
  (Table 5 lists no self-q), SD1.5 keeps self-q and self-k (Table 6);
* of the upsampler outputs only the one that enters the highest-resolution level with ViTs is kept
  (SDXL up-level0-upsampler-out, SD1.5 up-level2-upsampler-out; Tables 4 and 6); neither "an upsampler belongs
  to its input level" nor "... to its output level" reproduces both tables.

With these rules the paper's SDXL pool (279 candidates) gives exactly the 63 activations of Tables 4–5 and the
SD1.5 pool (164) exactly the 33 of Table 6 (tests/test_filter.py checks counts and membership).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

from diffact.analysis.names import INCREMENT_KINDS, SELF_QK_KINDS, ActivationName, parse_name
from diffact.utils.errors import ConfigError

KEPT_EARLY_KINDS = ("res-out", "vit-out", "block-out", "cross-q")


@dataclass(frozen=True)
class FilterRules:
    """Parameters of the qualitative filter (see the module docstring for where each comes from).

    n_up_levels:      the up-stage window: this many highest-resolution up-levels (paper: 3 for SDXL and SD1.5)
    late_self_kinds:  self-attention kinds kept in the late half (SDXL: self-k; SD1.5: self-q, self-k)
    early_kinds:      kinds kept in the early half (inter-module outputs, block outputs, cross-attention q)
    increment_kinds:  kinds dropped everywhere (rule d)
    """

    n_up_levels: int = 3
    late_self_kinds: tuple[str, ...] = SELF_QK_KINDS
    early_kinds: tuple[str, ...] = KEPT_EARLY_KINDS
    increment_kinds: tuple[str, ...] = INCREMENT_KINDS

    def __post_init__(self):
        if self.n_up_levels < 1:
            raise ConfigError(f"filter n_up_levels must be ≥ 1, got {self.n_up_levels}")
        unknown = set(self.late_self_kinds) - set(SELF_QK_KINDS)
        if unknown:
            raise ConfigError(f"filter late_self_kinds must be among {SELF_QK_KINDS}, got {sorted(unknown)}")


FAMILY_RULES: dict[str, FilterRules] = {
    "sdxl": FilterRules(late_self_kinds=("self-k",)),  # Table 5: up-level1-repeat2 block0/1 self-k only
    "sd15": FilterRules(late_self_kinds=("self-q", "self-k")),  # Table 6: up-level2-repeat2, up-level3 q and k
}


@dataclass
class UpStageLayout:
    """The up-stage as the filter sees it: per level, its number of repeats and whether it holds ViTs."""

    repeats: dict[int, int] = field(default_factory=dict)
    has_vit: dict[int, bool] = field(default_factory=dict)

    @classmethod
    def from_names(cls, names: Iterable[str]) -> "UpStageLayout":
        layout = cls()
        for parsed in map(parse_name, names):
            if parsed.stage != "up" or parsed.level is None:
                continue
            level = parsed.level
            layout.repeats.setdefault(level, 0)
            layout.has_vit.setdefault(level, False)
            if parsed.repeat is not None:
                layout.repeats[level] = max(layout.repeats[level], parsed.repeat + 1)
            if parsed.block is not None or parsed.kind == "vit-out":
                layout.has_vit[level] = True
        return layout

    @property
    def levels(self) -> list[int]:
        return sorted(self.repeats)


@dataclass(frozen=True)
class _Window:
    """Positions of the considered up-levels' repeats along the forward order."""

    levels: tuple[int, ...]
    start: dict[int, int]
    total: int
    last_vit_level: int | None

    def level_starts_early(self, level: int) -> bool:
        """A resolution belongs to the early half if its first repeat does (rule a, per resolution)."""
        return self.start[level] < self.total / 2

    def repeat_is_late(self, level: int, repeat: int) -> bool:
        """A repeat is in the late half if its centre lies past the middle of the window (rule c)."""
        return self.start[level] + repeat + 0.5 > self.total / 2


def _window(layout: UpStageLayout, n_up_levels: int) -> _Window:
    levels = tuple(layout.levels[-n_up_levels:])  # up-levels run low → high resolution: keep the last n
    start, position = {}, 0
    for level in levels:
        start[level] = position
        position += max(layout.repeats[level], 1)
    vit_levels = [lv for lv in levels if layout.has_vit.get(lv)]
    return _Window(levels, start, position, vit_levels[-1] if vit_levels else None)


def rules_for(family: str, n_up_levels: int | None = None) -> FilterRules:
    try:
        rules = FAMILY_RULES[family]
    except KeyError:
        raise ConfigError(f"no qualitative-filter rules for model family {family!r}; known: {', '.join(FAMILY_RULES)}") from None
    if n_up_levels is not None:
        rules = FilterRules(n_up_levels, rules.late_self_kinds, rules.early_kinds, rules.increment_kinds)
    return rules


def filter_decision(parsed: ActivationName, window: _Window, rules: FilterRules) -> tuple[bool, str]:
    """(kept, reason) for one candidate; the first rule that applies decides."""
    if parsed.stage != "up":
        return False, "not in the up-stage: diffusion noise (P1, rule a)"
    if parsed.level not in window.levels:
        return False, f"below the {rules.n_up_levels} highest-resolution up-levels (lowest resolution is inferior)"
    if parsed.kind in rules.increment_kinds:
        return False, "increment: high-frequency noise (Fig 16, rule d)"
    if parsed.kind in SELF_QK_KINDS:
        if parsed.repeat is not None and window.repeat_is_late(parsed.level, parsed.repeat):
            if parsed.kind in rules.late_self_kinds:
                return True, "self-attention q/k in the late half: locality suppresses noise (Fig 4c, rule c)"
            return False, f"late-half self-attention kind not kept for this family (keeps {', '.join(rules.late_self_kinds)})"
        return False, "self-attention q/k in the early half: locality (P3, Fig 4b, rule b)"
    if parsed.kind == "upsampler-out":
        if window.last_vit_level is not None and parsed.level + 1 == window.last_vit_level:
            return True, "upsampler output entering the highest-resolution ViT level (Tables 4, 6)"
        return False, "upsampler output not entering the highest-resolution ViT level (Tables 5, 6)"
    if parsed.kind in rules.early_kinds:
        if window.level_starts_early(parsed.level):
            return True, "early half of the up-stage (rule a)"
        return False, "late half of the up-stage: diffusion noise resurfaces (P1, rule a)"
    return False, f"kind {parsed.kind} is not a kept kind"


def filter_report(candidates: Sequence[str], family: str, n_up_levels: int | None = None,
                  layout_names: Iterable[str] | None = None) -> list[dict]:
    """One row per candidate: name, kind, kept, reason (forward order of ``candidates`` kept)."""
    rules = rules_for(family, n_up_levels)
    layout = UpStageLayout.from_names(layout_names if layout_names is not None else candidates)
    if not layout.levels:
        raise ConfigError("qualitative filter: the candidates hold no up-stage activations")
    window = _window(layout, rules.n_up_levels)
    rows = []
    for name in candidates:
        parsed = parse_name(name)
        kept, reason = filter_decision(parsed, window, rules)
        rows.append({"layer": name, "kind": parsed.kind, "kept": kept, "reason": reason})
    return rows


def qualitative_filter(candidates: Sequence[str], family: str, n_up_levels: int | None = None,
                       layout_names: Iterable[str] | None = None) -> list[str]:
    """The candidates that survive the paper's qualitative filter, in their given order.

    ``family`` picks the family rules (``sdxl``, ``sd15``); ``n_up_levels`` overrides the window size;
    ``layout_names`` (e.g. the model's whole catalog) describes the up-stage when ``candidates`` is a subset that
    does not show every level's repeats and ViTs.
    """
    return [row["layer"] for row in filter_report(candidates, family, n_up_levels, layout_names) if row["kept"]]
