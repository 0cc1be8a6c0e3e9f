"""``diffact check-data``: check every dataset root and model reference of a profile before a long run."""

from __future__ import annotations

from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("check-data",
                              help="check every dataset root and model of a profile; all problems at once")
    p.add_argument("--config", required=True, help="profile, e.g. config/paper.yaml")
    p.add_argument("--schema", help="JSON schema (default: schema.yaml beside the config)")
    p.add_argument("--skip-datasets", action="store_true", help="check the models only")
    p.add_argument("--skip-models", action="store_true", help="check the datasets only")
    p.add_argument("--offline", choices=["auto", "yes", "no"], default="auto",
                   help="hub models: only the local cache (yes), also the hub (no), or as HF_HUB_OFFLINE says (auto)")
    p.add_argument("--report", help="also write the problems and notes as JSON here")
    p.set_defaults(func=run_check_data)


def run_check_data(args) -> int:
    from diffact.checks import check_profile
    from diffact.utils.io import write_json

    from diffact.workflow import apply_hub_cache, read_profile

    path = Path(args.config)
    config = read_profile(path)
    apply_hub_cache(config)
    schema = Path(args.schema) if args.schema else path.parent / "schema.yaml"
    offline = {"auto": None, "yes": True, "no": False}[args.offline]
    report = check_profile(config, schema_path=schema if schema.is_file() else None,
                           datasets=not args.skip_datasets, models=not args.skip_models, offline=offline)
    for note in report.notes:
        print(f"note: {note}")
    for problem in report.problems:
        print(f"PROBLEM: {problem}")
    if args.report:
        write_json(args.report, {"config": str(path), "ok": report.ok, "problems": report.problems,
                                 "notes": report.notes})
    n_datasets = 0 if args.skip_datasets else len(config.get("datasets") or {})
    n_models = 0 if args.skip_models else len(config.get("models") or {})
    verdict = "ready" if report.ok else f"{len(report.problems)} problem(s)"
    print(f"check-data {path}: {n_datasets} datasets, {n_models} models: {verdict}")
    return 0 if report.ok else 1
