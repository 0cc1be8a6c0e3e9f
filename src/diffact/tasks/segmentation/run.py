"""Train and evaluate one segmentor with mmengine's Runner, and write its results row (paper §2.9, Table 2 left).

The mmseg config (``config/mmseg/...``) says everything; the overrides below are what the workflow varies:
the diffusion models and layers (``PartOverride``), the dataset root, the number of iterations (the poly schedule
is stretched to it), the seed, and any ``--cfg-options``. Evaluation is the config's test loop: mmseg's IoU metric
over the validation split, single scale, slide inference, after the last iteration.

Validation history (issue #16, point 5): the configs validate every ``val_interval`` iterations (the paper's
configs, like GDF's ``configs/ade_sdxl.py``, every 2000 of 80k). :func:`validation_history_hook` keeps every
validation's metrics, with its iteration, in the work dir's ``validation_history.csv`` (rewritten after each one,
so ``--resume`` continues it), and the run reports the last and the best mIoU (:func:`history_summary`).

``--resume`` continues from the work dir's latest checkpoint with the same result as an uninterrupted run:
checkpoints load under torch's safe unpickler with mmengine's few types allowed, and carry the random states
(:mod:`.checkpoints`). Training needs a batch of at least 2 (:func:`check_train_batch`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from diffact.utils.errors import ConfigError

log = logging.getLogger(__name__)

DATALOADERS = ("train_dataloader", "val_dataloader", "test_dataloader")
# Heads whose pooling branch normalises a 1×1 map with BatchNorm: in training that needs ≥ 2 images per batch.
POOLING_BN_HEADS = ("UPerHead",)


@dataclass(frozen=True)
class PartOverride:
    """Replace fields of ``model.backbone.models[i]`` (None = keep the config's)."""

    source: str | None = None
    layers: str | None = None
    family: str | None = None
    image_size: int | None = None
    revision: str | None = None
    variant: str | None = None

    def fields(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class SegRun:
    config: str
    work_dir: str
    parts: list[PartOverride] = field(default_factory=list)
    data_root: str | None = None
    iters: int | None = None
    seed: int = 0
    options: dict = field(default_factory=dict)
    resume: bool = False


def _set_models(cfg, parts: list[PartOverride]) -> None:
    """Override the config's models part by part; more overrides than parts append new parts."""
    models = [dict(m) for m in cfg.model.backbone.get("models", [])]
    for index, part in enumerate(parts):
        if index < len(models):
            base = models[index]
            if part.source and part.source != base.get("source"):
                # Another model: family, levels and variant of the old one no longer apply.
                for key in ("family", "levels", "revision", "variant"):
                    base.pop(key, None)
            base.update(part.fields())
        else:
            if not (part.source and part.layers):
                raise ConfigError(f"model {index}: a new model needs both --model and --layers")
            models.append(part.fields())
    if parts and len(parts) < len(models):
        models = models[: len(parts)]  # the command line names every model
    cfg.model.backbone.models = models


def _set_iters(cfg, iters: int) -> None:
    if iters < 1:
        raise ConfigError(f"--iters must be ≥ 1, got {iters}")
    cfg.train_cfg.max_iters = iters
    if "iters" in cfg:  # the demo config's own variable, kept truthful in the dumped config
        cfg.iters = iters
    if cfg.train_cfg.get("val_interval", 0) > iters:
        cfg.train_cfg.val_interval = iters
    for scheduler in cfg.get("param_scheduler", []) or []:
        if scheduler.get("by_epoch", True) is False and "end" in scheduler:
            scheduler["end"] = iters


def check_train_batch(cfg, path) -> None:
    """Fail before training when a batch is too small for the head's batch norms (paper: batch 2).

    UPerHead's pyramid pooling branch with pool scale 1 (always among the 'auto' scales) pools each feature map to
    1×1 and normalises it with BatchNorm; with one image per batch that is a single value per channel, and torch
    stops training with "Expected more than 1 value per channel when training". The check is per process: diffact
    trains in one process, where SyncBN is reverted to plain BatchNorm.
    """
    head = cfg.model.get("decode_head") or {}
    if head.get("type") not in POOLING_BN_HEADS or not cfg.get("train_dataloader"):
        return
    batch = cfg.train_dataloader.get("batch_size", 1)
    if not isinstance(batch, int) or batch < 2:
        raise ConfigError(f"{path}: train_dataloader.batch_size = {batch!r}, but ≥ 2 is required: "
                          f"{head['type']}'s pooling branch normalises a 1×1 map with BatchNorm, which needs more "
                          "than one image per batch in training (the paper trains with batch 2)")


def build_config(run: SegRun):
    """The mmengine Config of a run: the file plus every override."""
    from mmengine.config import Config

    from diffact.tasks.segmentation.config_text import formatted_once

    path = Path(run.config)
    if not path.is_file():
        raise ConfigError(f"mmseg config {path} does not exist (see config/mmseg/)")
    cfg = Config.fromfile(str(path))
    if run.options:
        cfg.merge_from_dict(run.options)
    if run.parts:
        _set_models(cfg, run.parts)
    if run.data_root:
        for name in DATALOADERS:
            if cfg.get(name):
                cfg[name].dataset.data_root = run.data_root
    if run.iters:
        _set_iters(cfg, run.iters)
    cfg.randomness = dict(seed=int(run.seed))
    cfg.work_dir = str(run.work_dir)
    cfg.resume = bool(run.resume)
    check_train_batch(cfg, path)
    return formatted_once(cfg)


def _forward_logs(runner) -> None:
    """Also write mmengine's log lines (losses, per-class table) to diffact's --log file."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler) and handler not in runner.logger.handlers:
            runner.logger.addHandler(handler)


def _start_iter_hook():
    """A hook that records the iteration training starts from (0, or where --resume picked up)."""
    from mmengine.hooks import Hook

    class StartIter(Hook):
        priority = "VERY_LOW"
        start = 0

        def before_train(self, runner) -> None:
            self.start = int(runner.iter)

    return StartIter()


HISTORY_FILE = "validation_history.csv"  # in the work dir: every validation so far, kept across --resume


def metric_columns(metrics: dict) -> dict:
    """mmseg's metric names as CSV columns: miou, macc, aacc, then iou.<class> and acc.<class> (rounded to mmseg's
    2 decimals again: float32 noise such as 29.670000076 would show in the CSV)."""
    def value(name):
        return round(float(metrics[name]), 2) if name in metrics else None

    classes = [name.removeprefix("IoU.") for name in metrics if name.startswith("IoU.")]
    return {"miou": value("mIoU"), "macc": value("mAcc"), "aacc": value("aAcc"),
            **{f"iou.{c}": value(f"IoU.{c}") for c in classes}, **{f"acc.{c}": value(f"Acc.{c}") for c in classes}}


def _read_history(path: Path) -> list[dict]:
    import pandas as pd

    return pd.read_csv(path).to_dict("records") if path.is_file() else []


def _validation_due(loop, iteration: int) -> bool:
    """Whether the train loop validates after ``iteration`` (mmengine's IterBasedTrainLoop rule)."""
    return iteration >= loop.val_begin and (iteration % loop.val_interval == 0 or iteration == loop.max_iters)


def validation_history_hook(path: Path):
    """A hook that appends every validation's :func:`metric_columns`, after ``iteration``, to its ``rows`` and to
    ``path``, and keeps the last validation's raw metrics and iteration (``metrics``, ``iteration``) of this
    process. A run from iteration 0 starts a new history. A resumed run keeps the rows up to its checkpoint (later
    ones are validated again), and validates at the checkpoint's iteration first when the history lacks it: mmengine
    writes a checkpoint before the validation of the same iteration and does not repeat that validation on resume,
    so a job killed in between would leave a gap. (Validation leaves the training's random states alone:
    :class:`~diffact.tasks.segmentation.checkpoints.RandomStatesHook`.)"""
    from mmengine.hooks import Hook

    from diffact.utils.io import write_csv

    class ValidationHistory(Hook):
        priority = "VERY_LOW"

        def __init__(self) -> None:
            self.rows: list[dict] = []
            self.metrics: dict | None = None
            self.iteration = -1

        def before_train(self, runner) -> None:
            start = int(runner.iter)
            self.rows = [row for row in _read_history(path) if row["iteration"] <= start] if start else []
            done = {row["iteration"] for row in self.rows}
            if start and runner.val_loop is not None and _validation_due(runner.train_loop, start) \
                    and start not in done:
                log.info("the validation after iteration %d did not finish before the run stopped: running it", start)
                runner.val_loop.run()

        def after_val_epoch(self, runner, metrics=None) -> None:
            import pandas as pd

            self.metrics, self.iteration = dict(metrics or {}), int(runner.iter)
            self.rows.append({"iteration": self.iteration, **metric_columns(self.metrics)})
            write_csv(path, pd.DataFrame(self.rows))

    return ValidationHistory()


def history_summary(rows: list[dict]) -> dict:
    """``miou_last`` (the last validation's mIoU), ``miou_best`` (the highest) and ``best_iter`` (its iteration, the
    first if several tie); None each without a validation."""
    scored = [row for row in rows if row.get("miou") is not None and row["miou"] == row["miou"]]  # NaN ≠ NaN
    if not scored:
        return {"miou_last": None, "miou_best": None, "best_iter": None}
    best = max(scored, key=lambda row: row["miou"])  # max keeps the first of equal values
    return {"miou_last": scored[-1]["miou"], "miou_best": best["miou"], "best_iter": int(best["iteration"])}


def test_repeats_validation(cfg) -> bool:
    """The test loop would evaluate what the validation after the last iteration already did: the same data, the
    same pipeline, the same metric (the paper configs test on the validation set, as mmseg's do)."""
    return (cfg.get("test_dataloader") == cfg.get("val_dataloader")
            and cfg.get("test_evaluator") == cfg.get("val_evaluator"))


def _per_iter(seconds: float, iters: int) -> float:
    return seconds / iters if iters > 0 else float("nan")


def train_and_evaluate(run: SegRun, reuse_final_validation: bool = True) -> dict:
    """Train, then test; returns the metrics plus timing, the levels that were used and the validation history
    (``history``: one :func:`metric_columns` row per validation, with its ``iteration``).

    mmengine validates after the last iteration; where the test loop is that same evaluation
    (:func:`test_repeats_validation`) its metrics are the test's, instead of a second pass over the validation set
    (ADE20K: 2,000 images, ~4,000 slide windows of U-Net passes; 1 of the 41 evaluations of an 80k run). A run
    that trains nothing (``--resume`` of a finished run) or validates elsewhere runs the test loop."""
    import torch

    from diffact.tasks.segmentation.checkpoints import FinalCheckpointHook, RandomStatesHook, SegRunner

    cfg = build_config(run)
    runner = SegRunner.from_cfg(cfg)
    _forward_logs(runner)
    start = _start_iter_hook()
    runner.register_hook(start)
    runner.register_hook(RandomStatesHook())
    runner.register_hook(FinalCheckpointHook())
    history = validation_history_hook(Path(cfg.work_dir) / HISTORY_FILE)
    runner.register_hook(history)
    model = runner.model.module if hasattr(runner.model, "module") else runner.model
    backbone = model.backbone
    iters = int(cfg.train_cfg.max_iters)
    wall, cpu = time.perf_counter(), time.process_time()
    runner.train()
    train_wall, train_cpu = time.perf_counter() - wall, time.process_time() - cpu
    wall = time.perf_counter()
    if reuse_final_validation and history.iteration == iters and test_repeats_validation(cfg):
        metrics, test_from = history.metrics, f"validation after iteration {iters}"
    else:
        metrics, test_from = runner.test(), "test loop"
    eval_wall = time.perf_counter() - wall
    trained = max(iters - start.start, 0)  # 0 when --resume found training finished: no timing then
    return {
        # mmseg rounds to 2 decimals in float32; round again so the CSV does not show float32 noise (29.670000076)
        "metrics": {k: round(float(v), 2) for k, v in metrics.items()},
        "history": list(history.rows),
        "iters": iters,
        "train_seconds": train_wall,
        "trained_iters": trained,
        "sec_per_iter": _per_iter(train_wall, trained),
        "cpu_sec_per_iter": _per_iter(train_cpu, trained),
        "eval_seconds": eval_wall,
        "test_from": test_from,
        "n_val": len(runner.test_dataloader.dataset),
        "threads": torch.get_num_threads(),
        "level_channels": list(backbone.level_channels),
        "levels": backbone.describe_levels(),
        "models": [p.source for p in backbone.parts],
        "layers": [name for p in backbone.parts for name in p.layer_names],
        "classes": list(runner.test_dataloader.dataset.metainfo["classes"]),
    }


def result_row(result: dict, labels: dict) -> dict:
    """One CSV row: labels (dataset, model, layer set, ...), mIoU & co. of the test after the last iteration, the
    last and the best validation mIoU with the best one's iteration (:func:`history_summary`), timing, per-class
    IoU / accuracy."""
    metrics = result["metrics"]
    row = dict(labels)
    row.update(miou=metrics.get("mIoU"), **history_summary(result.get("history", [])),
               macc=metrics.get("mAcc"), aacc=metrics.get("aAcc"), iters=result["iters"],
               trained_iters=result["trained_iters"], sec_per_iter=round(result["sec_per_iter"], 4),
               cpu_sec_per_iter=round(result["cpu_sec_per_iter"], 4),
               train_seconds=round(result["train_seconds"], 1), eval_seconds=round(result["eval_seconds"], 1),
               test_from=result["test_from"], threads=result["threads"], n_val=result["n_val"],
               level_channels=" ".join(map(str, result["level_channels"])),
               channels=sum(result["level_channels"]), models=";".join(result["models"]),
               layers=";".join(result["layers"]))
    for name in result["classes"]:
        row[f"iou.{name}"] = metrics.get(f"IoU.{name}")
    for name in result["classes"]:
        row[f"acc.{name}"] = metrics.get(f"Acc.{name}")
    return row
