"""CLI of the models:

* ``diffact build-demo-model``    — build (and train) a tiny SD1.5-, SDXL- or SD3-layout pipeline;
* ``diffact demo-heldout-loss``   — a saved demo model's held-out denoising loss;
* ``diffact make-standin-models`` — full-size random-weight stand-ins of the paper's models in a hub cache.
"""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    _register_build_demo_model(subparsers)
    _register_demo_heldout_loss(subparsers)
    _register_make_standin_models(subparsers)


def _register_build_demo_model(subparsers) -> None:
    from diffact.models.demo import ARCHS
    from diffact.models.train import LR_SCHEDULES, DemoTrainSettings
    from diffact.utils.args import default_of

    def setting(name):  # the defaults are DemoTrainSettings', written there once
        return default_of(DemoTrainSettings, name)
    parser = subparsers.add_parser(
        "build-demo-model",
        help="build a tiny SD1.5/SDXL/SD3-layout diffusers pipeline, train it on CPU, save it as a folder",
        description=(
            "Build a tiny latent-diffusion pipeline with the block layout of Stable Diffusion 1.5 (sd15), "
            "SDXL (sdxl) or SD3-medium (sd3, a diffusion transformer), train its VAE and denoiser (U-Net: "
            "epsilon prediction; transformer: rectified flow) on crops of images shipped with scikit-image, and "
            "save it as a standard diffusers folder loadable with DiffusionPipeline.from_pretrained (offline; sd3 "
            "has no T5: pass text_encoder_3=None, tokenizer_3=None, as diffusers does for SD3 without T5)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--arch", required=True, choices=ARCHS, help="block layout")
    parser.add_argument("--out", required=True, metavar="DIR", help="pipeline folder to write (replaced atomically)")
    parser.add_argument("--image-size", type=int, default=setting("image_size"), help="training crop size (pixels)")
    parser.add_argument("--batch-size", type=int, default=setting("batch_size"), help="crops per step")
    parser.add_argument("--unet-batch-size", type=int, default=setting("unet_batch_size"),
                        help="the denoiser's crops per step (default: --batch-size)")
    parser.add_argument("--vae-steps", type=int, default=setting("vae_steps"), help="VAE training steps")
    parser.add_argument("--unet-steps", type=int, default=setting("unet_steps"),
                        help="denoiser (U-Net or transformer) training steps")
    parser.add_argument("--lr", type=float, default=setting("lr"),
                        help="AdamW learning rate (the VAE's; the denoiser's peak unless --unet-lr)")
    parser.add_argument("--unet-lr", type=float, default=setting("unet_lr"),
                        help="the denoiser's peak learning rate (default: --lr)")
    parser.add_argument("--lr-schedule", choices=LR_SCHEDULES, default=setting("lr_schedule"),
                        help="the denoiser's learning rate after the warm-up: constant, or a cosine decay to 0")
    parser.add_argument("--warmup-steps", type=int, default=setting("warmup_steps"),
                        help="denoiser steps of linear warm-up to the peak learning rate")
    parser.add_argument("--seed", type=int, default=setting("seed"), help="seeds weights, crops, noise")
    parser.add_argument("--prompt", default=setting("prompt"), help="fixed training prompt")
    parser.add_argument(
        "--untrained", action="store_true", help="save the seeded random-weight pipeline instead (reference row)"
    )
    parser.add_argument("--loss-csv", metavar="FILE", help="write the loss curve as CSV (step, component, loss)")
    parser.add_argument("--loss-png", metavar="FILE", help="write the loss curve plot")
    parser.add_argument("--heldout-csv", metavar="FILE",
                        help="score the trained model's held-out loss (logged; the CSV has one row per grid point)")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")
    # the global --threads (diffact.cli), pinned while training: the weights' bits depend on the thread count
    parser.set_defaults(func=handle_build_demo_model, threads=setting("num_threads"))


def handle_build_demo_model(args) -> int:
    from diffact.models.train import DemoTrainSettings, build_demo_model

    settings = DemoTrainSettings(
        image_size=args.image_size,
        batch_size=args.batch_size,
        unet_batch_size=args.unet_batch_size,
        vae_steps=args.vae_steps,
        unet_steps=args.unet_steps,
        lr=args.lr,
        unet_lr=args.unet_lr,
        lr_schedule=args.lr_schedule,
        warmup_steps=args.warmup_steps,
        seed=args.seed,
        prompt=args.prompt,
        num_threads=args.threads,
    ).validate()
    build_demo_model(
        args.arch,
        args.out,
        settings,
        untrained=args.untrained,
        loss_csv=args.loss_csv,
        loss_png=args.loss_png,
        heldout_csv=args.heldout_csv,
        progress=not args.no_progress,
    )
    return 0


def _register_demo_heldout_loss(subparsers) -> None:
    from diffact.models.train import DemoTrainSettings
    from diffact.utils.args import default_of

    parser = subparsers.add_parser(
        "demo-heldout-loss",
        help="a saved demo model's held-out denoising loss (fixed crops, timestep/σ grid and noise)",
        description=(
            "The denoiser's training loss on fixed seeded data (crops of the training images, a grid of timesteps "
            "or σ, one noise draw per crop and grid point; diffact.models.train.heldout_loss): the same model "
            "always gets the same number, so two training settings compare on it. Prints the mean; --csv writes "
            "one row per grid point."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model", required=True, metavar="DIR", help="a demo pipeline folder (build-demo-model)")
    parser.add_argument("--csv", metavar="FILE", help="write grid_point, timestep, sigma, loss")
    parser.add_argument("--image-size", type=int, default=default_of(DemoTrainSettings, "image_size"),
                        help="crop size (pixels): the model's training crops")
    parser.add_argument("--seed", type=int, default=default_of(DemoTrainSettings, "seed"),
                        help="seeds the fixed crops and noise (the build's seed gives the number in its log)")
    # pinned as the build's: the number's last bits depend on the thread count
    parser.set_defaults(func=handle_demo_heldout_loss, threads=default_of(DemoTrainSettings, "num_threads"))


def handle_demo_heldout_loss(args) -> int:
    from diffact.models.loading import load_pipeline
    from diffact.models.train import DemoTrainSettings, heldout_loss, mean_heldout_loss, write_heldout_csv

    rows = heldout_loss(load_pipeline(args.model, dtype="float32", device="cpu"),
                        DemoTrainSettings(image_size=args.image_size, seed=args.seed,
                                          num_threads=args.threads).validate())
    if args.csv:
        write_heldout_csv(args.csv, rows)
    print(f"{mean_heldout_loss(rows):.6f}")
    return 0


def _register_make_standin_models(subparsers) -> None:
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
