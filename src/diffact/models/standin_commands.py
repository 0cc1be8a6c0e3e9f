"""CLI: ``diffact make-standin-models`` — full-size random-weight stand-ins of the paper's models in a hub cache."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    from diffact.models.standins import PAPER_HUB_IDS, VARIANTS

    parser = subparsers.add_parser(
        "make-standin-models",
        help="write SD1.5/SD2.1/SDXL/PGv2 stand-ins (real configs, seeded random weights) into a HF hub cache",
        description=(
            "Write complete diffusers pipelines of the paper's models, built from their real configs with seeded "
            "random weights, into a Hugging Face hub cache under their hub ids, so that HF_HUB_CACHE=CACHE makes "
            "the paper profile load them offline through the same code as downloaded weights. For rehearsals "
            "only: their features mean nothing. Never point --cache at the cache that holds your real weights."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--cache", required=True, metavar="DIR", help="hub cache folder to write (HF_HUB_CACHE layout)")
    parser.add_argument("--models", default=",".join(PAPER_HUB_IDS), help=f"comma list of {', '.join(PAPER_HUB_IDS)}")
    parser.add_argument("--seed", type=int, default=0, help="seeds every model's weights (per model and component)")
    parser.add_argument("--variants", default="fp16",
                        help=f"comma list of weight files to write: {', '.join(VARIANTS)} (the paper profile loads fp16)")
    parser.set_defaults(func=handle_make_standin_models)


def handle_make_standin_models(args) -> int:
    from diffact.models.standins import write_standin
    from diffact.utils.errors import ConfigError

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not models:
        raise ConfigError("--models: expected a comma list of model names, got nothing")
    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    for key in models:
        print(write_standin(args.cache, key, seed=args.seed, variants=variants))
    return 0
