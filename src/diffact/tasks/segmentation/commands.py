"""CLI for semantic segmentation with mmsegmentation (paper §2.9, Table 2 left):

* ``diffact seg-train``            — train a config's segmentor with mmengine's Runner, evaluate it (mmseg IoU),
  write one CSV row (mIoU, last and best validation mIoU, per-class IoU, iterations, seconds per iteration) and
  the validation history (one row per validation);
* ``diffact seg-baseline``         — the constant-class baseline (most frequent training class everywhere).

The segmentation datasets' commands (``make-demo-ade``, ``seg-check``, ``cityscapes-train-ids``) are in
:mod:`diffact.data.commands`.
"""

from __future__ import annotations

import logging

from diffact.data.commands import SEGMENTATION_LAYOUTS

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    p = subparsers.add_parser("seg-train", help="train + evaluate an mmseg config's diffusion segmentor (Table 2 left)")
    p.add_argument("config", help="mmseg config (config/mmseg/...)")
    p.add_argument("--work-dir", required=True, help="mmengine work dir (logs, config dump, checkpoints)")
    p.add_argument("--out", required=True, help="results CSV (one row)")
    p.add_argument("--history", help="validation history CSV, one row per validation (default: <--out without "
                                     ".csv>.history.csv)")
    p.add_argument("--model", action="append", default=[], metavar="SOURCE",
                   help="diffusion model (hub id or pipeline folder) of part i; repeat for several models")
    p.add_argument("--layers", action="append", default=[], help="layer set or comma-separated layers of part i")
    p.add_argument("--family", action="append", default=[], help="layer-set family of part i (default: inferred)")
    p.add_argument("--image-size", action="append", type=int, default=[], help="extraction size of part i")
    p.add_argument("--revision", action="append", default=[], help="hub revision of part i")
    p.add_argument("--variant", action="append", default=[], help="weights variant of part i (e.g. fp16)")
    p.add_argument("--data-root", help="dataset root (replaces the config's data_root)")
    p.add_argument("--iters", type=int, help="training iterations (the poly schedule follows; paper: 80000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16", "auto"],
                   help="the frozen diffusion models' dtype (model.backbone.dtype; paper configs: float16 on the GPU; "
                        "auto: the fastest this device runs natively)")
    p.add_argument("--workers", type=int,
                   help="dataloader workers of train, val and test (default: the config's; 0 loads in the main "
                        "process, which on a CPU host saves the workers' copies of a process holding the models)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in the work dir")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                   help="extra column of the results row (e.g. dataset=ade20k model=sdxl layer_set=practical)")
    p.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE",
                   help="mmengine config overrides, e.g. model.backbone.resblock_init=last_norm")
    p.set_defaults(func=cmd_seg_train)

    p = subparsers.add_parser("seg-baseline", help="constant-class baseline mIoU (most frequent training class)")
    p.add_argument("--layout", choices=SEGMENTATION_LAYOUTS, required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--out", required=True, help="CSV (one row)")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="extra column")
    p.set_defaults(func=cmd_seg_baseline)


def dataloader_worker_options(workers: int) -> dict:
    """mmengine overrides giving every dataloader ``workers`` processes (persistent only when there are any:
    torch's DataLoader refuses ``persistent_workers`` without workers)."""
    from diffact.utils.errors import ConfigError

    if workers < 0:
        raise ConfigError(f"--workers must be ≥ 0, got {workers}")
    return {f"{loader}_dataloader.{key}": value for loader in ("train", "val", "test")
            for key, value in (("num_workers", workers), ("persistent_workers", workers > 0))}


def parse_pairs(items, what: str) -> dict:
    """``KEY=VALUE`` strings → dict; values parsed as YAML scalars/lists (``8``, ``last_norm``, ``[1,2]``)."""
    import yaml

    from diffact.utils.errors import ConfigError

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{what} expects KEY=VALUE, got {item!r}")
        out[key] = yaml.safe_load(value) if value else ""
    return out


def part_overrides(args) -> list:
    """One PartOverride per --model (or per --layers when no model is named): the i-th of each list."""
    from diffact.tasks.segmentation.run import PartOverride
    from diffact.utils.errors import ConfigError

    n = max(len(args.model), len(args.layers))
    lists = {"family": args.family, "image_size": args.image_size, "revision": args.revision, "variant": args.variant}
    for name, values in {"model": args.model, "layers": args.layers, **lists}.items():
        if values and len(values) != n:
            raise ConfigError(f"--{name.replace('_', '-')} given {len(values)} time(s) for {n} model(s): "
                              "give it once per --model, in the same order")

    def nth(values, i):
        return values[i] if values else None

    return [PartOverride(source=nth(args.model, i), layers=nth(args.layers, i), family=nth(args.family, i),
                         image_size=nth(args.image_size, i), revision=nth(args.revision, i),
                         variant=nth(args.variant, i)) for i in range(n)]


def cmd_seg_train(args) -> int:
    import pandas as pd

    from diffact.workflow.segmentation import history_csv
    from diffact.tasks.segmentation.run import SegRun, result_row, train_and_evaluate
    from diffact.utils.io import write_csv
    from diffact.utils.seeding import seed_everything

    seed_everything(args.seed)
    labels = parse_pairs(args.label, "--label")
    options = parse_pairs(args.cfg_options, "--cfg-options")
    if args.dtype:
        options["model.backbone.dtype"] = args.dtype
    if args.workers is not None:
        options.update(dataloader_worker_options(args.workers))
    run = SegRun(config=args.config, work_dir=args.work_dir, parts=part_overrides(args), data_root=args.data_root,
                 iters=args.iters, seed=args.seed, options=options,
                 resume=args.resume)
    result = train_and_evaluate(run)
    # Overrides change what was trained (e.g. the rehearsal's SGD for Ours-XL-t): the row says so.
    row = result_row(result, {**labels, "config": args.config,
                              **({"cfg_options": " ".join(args.cfg_options)} if args.cfg_options else {})})
    write_csv(args.out, pd.DataFrame([row]))
    history = args.history or history_csv(str(args.out))
    # (a config without validation during training has a history of no rows; the file still says its columns)
    write_csv(history, pd.DataFrame(result["history"]) if result["history"]
              else pd.DataFrame(columns=["iteration", "miou", "macc", "aacc"]))
    log.info("mIoU %.2f after %d iterations (%.3f s/iter, %.3f CPU s/iter) → %s; best validation mIoU %s at "
             "iteration %s of %d validations → %s", row["miou"], row["iters"], row["sec_per_iter"],
             row["cpu_sec_per_iter"], args.out, row["miou_best"], row["best_iter"], len(result["history"]), history)
    return 0


def cmd_seg_baseline(args) -> int:
    import pandas as pd

    from diffact.tasks.segmentation.baseline import constant_baseline
    from diffact.utils.io import write_csv

    row = {**parse_pairs(args.label, "--label"), **constant_baseline(args.layout, args.root)}
    write_csv(args.out, pd.DataFrame([row]))
    log.info("constant-class baseline (%s): mIoU %.2f → %s", row["class_name"], row["miou"], args.out)
    return 0
