"""Settings of the Table 1 aggregation training and the NN search size (docs/paper.md §2.8), in a module without
torch: the command parser reads their defaults, :mod:`.aggregation` and :mod:`.matching` import them from here."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from diffact.utils.errors import ConfigError

PAPER_FEATURE_SIZE = 128  # docs/paper.md §2.8: every layer → 128×128 before the conv
PAPER_EVAL_SIZE = 512  # docs/paper.md §2.8: features (or the trained conv's output) → 512×512 for the NN search


@dataclass(frozen=True)
class AggregationTrainSettings:
    """Training of the aggregation conv. Defaults are the paper's (docs/paper.md §2.8, upstream task-corres.py)."""

    epochs: int = 2
    pairs_per_epoch: int = 5000
    eval_every: int = 500
    lr: float = 5e-4
    weight_decay: float = 0.01
    seed: int = 0
    feature_size: int = PAPER_FEATURE_SIZE
    eval_size: int = PAPER_EVAL_SIZE

    def __post_init__(self) -> None:
        for name in ("epochs", "pairs_per_epoch", "eval_every", "feature_size", "eval_size"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"correspondence training setting '{name}' must be a positive integer, got {getattr(self, name)}")
        if not self.lr > 0 or self.weight_decay < 0:
            raise ConfigError(f"need lr > 0 and weight_decay ≥ 0, got lr={self.lr}, weight_decay={self.weight_decay}")

    @property
    def steps(self) -> int:
        return self.epochs * self.pairs_per_epoch

    def as_dict(self) -> dict:
        return asdict(self)
