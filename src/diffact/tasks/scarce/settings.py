"""Settings of a label-scarce run (paper §2.10), in a module without torch: the command parser reads their defaults,
the runs (:mod:`.pipeline`, :mod:`.ensemble`) import them from here."""

from __future__ import annotations

import dataclasses

from diffact.utils.errors import ConfigError

MIN_CLASS_PIXELS = 20  # DDPM-seg: "if 0 < (label == target).sum() < 20: label[label == target] = ignore"
UPSAMPLE_MODES = ("nearest-bilinear", "bilinear")  # how a multi-layer set reaches S×S (:mod:`.sources`)


@dataclasses.dataclass(frozen=True)
class EnsembleTrainSettings:
    """Training knobs with the paper's values as defaults (§2.10)."""

    members: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    max_epochs: int = 100
    stop_after_epoch: int = 3
    patience: int = 50
    max_batches_per_epoch: int | None = None  # cap for smoke tests and memory benchmarks; None = paper
    device: str = "cpu"


@dataclasses.dataclass(frozen=True)
class ScarceConfig:
    """Settings of one label-scarce evaluation; defaults are the paper's (§2.10) except where noted.

    size:        side S the features and labels are resized to (paper 256; demo e.g. 64)
    splits:      number of random re-splits (paper 5); ``shuffle=False`` keeps the original split (one run)
    pixel_rate:  fraction of labelled training pixels kept per image (paper 1.0)
    buffer_mb:   memory (MiB) for the one streaming buffer of training pixels, float32 features and int64
                 labels (not in the paper, which keeps all pixels in RAM); the training set's RAM is bounded
                 by it, whatever the number of images (:class:`~diffact.tasks.scarce.pixels.PixelStream`)
    upsample:    how a multi-layer set reaches S×S: ``nearest-bilinear`` (the authors' code: nearest to the set's
                 largest map, then bilinear) or ``bilinear`` from each native map (:mod:`.sources`)
    predict_chunk: test pixels classified at once
    absent / ignored_pixels: mIoU conventions, see :mod:`diffact.tasks.scarce.metrics`
    """

    size: int = 256
    splits: int = 5
    shuffle: bool = True
    seed: int = 0
    min_pixels: int = MIN_CLASS_PIXELS
    pixel_rate: float = 1.0
    buffer_mb: float = 1024.0
    upsample: str = "nearest-bilinear"
    predict_chunk: int = 16384
    absent: str = "zero"
    ignored_pixels: str = "false-positive"
    train: EnsembleTrainSettings = dataclasses.field(default_factory=EnsembleTrainSettings)

    def validate(self) -> None:
        if self.size < 1:
            raise ConfigError(f"scarce size must be positive, got {self.size}")
        if self.splits < 1:
            raise ConfigError(f"scarce splits must be ≥ 1, got {self.splits}")
        if not 0.0 < self.pixel_rate <= 1.0:
            raise ConfigError(f"scarce pixel_rate must be in (0, 1], got {self.pixel_rate}")
        if self.buffer_mb <= 0:
            raise ConfigError(f"scarce buffer_mb must be positive, got {self.buffer_mb}")
        if self.upsample not in UPSAMPLE_MODES:
            raise ConfigError(f"scarce upsample must be one of {', '.join(UPSAMPLE_MODES)}, got {self.upsample!r}")
        if self.train.members < 1 or self.train.batch_size < 2 or self.train.max_epochs < 1:
            raise ConfigError("scarce training needs members ≥ 1, batch_size ≥ 2 (BatchNorm) and max_epochs ≥ 1")

    def protocol_key(self) -> str:
        """Every setting that decides a result (not the buffer or chunk sizes, which only bound memory), as one
        string: a screen resumes only rows made with the same key."""
        t = self.train
        return (f"size={self.size} splits={self.splits} shuffle={self.shuffle} seed={self.seed} "
                f"min_pixels={self.min_pixels} pixel_rate={self.pixel_rate} upsample={self.upsample} "
                f"absent={self.absent} ignored={self.ignored_pixels} members={t.members} batch={t.batch_size} "
                f"lr={t.lr} epochs={t.max_epochs} stop_after={t.stop_after_epoch} patience={t.patience} "
                f"max_batches={t.max_batches_per_epoch}")

    def buffer_pixels(self, channels: int) -> int:
        """Pixels per streaming buffer: ``buffer_mb`` of rows (C float32 features + one int64 label), at least
        one batch."""
        return max(self.train.batch_size, int(self.buffer_mb * 2**20 // (4 * max(channels, 1) + 8)))
