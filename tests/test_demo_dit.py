"""The tiny SD3-medium-layout demo DiT (``build-demo-model --arch sd3``): layout, seeding, flow-matching
training, offline save/load, extraction through the public API and the ``layers`` CLI.

Training runs for a few steps on 32-px crops (8×8 token grid): enough to exercise every code path.
"""

from __future__ import annotations

import dataclasses
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path

import pandas as pd
import pytest
import torch

from diffact.models import demo
from diffact.models.train import DemoTrainSettings, build_demo_model, text_conditioning
from diffact.utils.errors import ConfigError

# One thread, as tests/test_demo_models.py (tests share busy cores). Batch 4, 6 DiT steps: ~0.3 s a step.
FAST = DemoTrainSettings(image_size=32, batch_size=4, vae_steps=2, unet_steps=6, seed=0, num_threads=1)


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """The sd3 demo trained for a few steps and saved, with its loss CSV and plot."""
    root = tmp_path_factory.mktemp("demo_dit")
    build_demo_model("sd3", root / "sd3", FAST, loss_csv=root / "sd3.csv", loss_png=root / "sd3.png", progress=False)
    return {"root": root, "sd3": root / "sd3"}


# --- layout and seeding -------------------------------------------------------------------------------


def test_sd3_layout_matches_sd3_medium():
    from diffusers import FlowMatchEulerDiscreteScheduler, StableDiffusion3Pipeline

    from diffact.models.configs import listing_denoiser

    pipe = demo.random_init_pipeline("sd3")
    assert isinstance(pipe, StableDiffusion3Pipeline) and pipe.text_encoder_3 is None and pipe.tokenizer_3 is None
    model = pipe.transformer
    assert type(model).__name__ == "SD3Transformer2DModel"
    blocks = model.transformer_blocks
    assert len(blocks) == 24 and [b.context_pre_only for b in blocks] == [False] * 23 + [True]
    assert all(getattr(b, "attn2", None) is None for b in blocks)  # SD3-medium: no dual attention
    config = model.config
    # SD3-medium's block count, patch size and pos-embed ratio (192 / 64 = 48 / 16), at width 32
    real = listing_denoiser("stabilityai/stable-diffusion-3-medium-diffusers")[0].config
    assert (config.num_layers, config.patch_size) == (real.num_layers, real.patch_size) == (24, 2)
    assert config.num_attention_heads * config.attention_head_dim == config.caption_projection_dim == 32
    assert config.in_channels == config.out_channels == pipe.vae.config.latent_channels == 4
    assert config.sample_size == 32 and config.pos_embed_max_size == 48
    assert config.joint_attention_dim == 2 * demo.TEXT_HIDDEN_SIZE
    assert config.pooled_projection_dim == 2 * demo.TEXT_ENCODER_CONFIG["projection_dim"]
    assert type(pipe.text_encoder).__name__ == type(pipe.text_encoder_2).__name__ == "CLIPTextModelWithProjection"
    assert isinstance(pipe.scheduler, FlowMatchEulerDiscreteScheduler) and pipe.scheduler.config.shift == 3.0
    assert pipe.vae.config.shift_factor == demo.SD3_VAE_SHIFT_PLACEHOLDER  # calibrated later
    assert pipe.tokenizer_2.pad_token == "!"  # SD3-medium's tokenizer_2 (OpenCLIP) pads with "!"
    assert demo.count_parameters(model) <= 1_000_000


def test_sd3_forward_at_64px_and_encode_prompt_shapes():
    pipe = demo.random_init_pipeline("sd3")
    # the family's conditioning (training and extraction alike): 77 CLIP tokens then 77 zero tokens in place of
    # T5, SD3's training length (families/sd3.py T5_TOKENS), not encode_prompt's inference default of 256
    cond = text_conditioning(pipe, "a photo", 64)
    embeds, pooled = cond["encoder_hidden_states"], cond["pooled_projections"]
    assert embeds.shape == (1, 77 + 77, 64) and pooled.shape == (1, 64)
    assert not embeds[:, 77:].any() and embeds[:, :77].any()
    assert embeds.shape[1] == demo.listing_denoiser("sd3")[1]  # the catalog's cross-map width
    with torch.no_grad():
        out = pipe.transformer(hidden_states=torch.randn(1, 4, 32, 32), timestep=torch.tensor([141.0]),
                               encoder_hidden_states=embeds, pooled_projections=pooled).sample
    assert out.shape == (1, 4, 32, 32) and torch.isfinite(out).all()


def test_sd3_same_seed_same_weights_other_seed_differs():
    a, b, c = (demo.random_init_pipeline("sd3", seed) for seed in (0, 0, 1))
    for name in ("transformer", "vae", "text_encoder", "text_encoder_2"):
        sa, sb, sc = (getattr(p, name).state_dict() for p in (a, b, c))
        assert all(torch.equal(sa[k], sb[k]) for k in sa), name
        assert not all(torch.equal(sa[k], sc[k]) for k in sa), name
    # the two CLIPs are seeded apart (CLIP-L and CLIP-G are different models)
    one, two = a.text_encoder.state_dict(), a.text_encoder_2.state_dict()
    assert not all(torch.equal(one[k], two[k]) for k in one)


def test_unet_archs_have_no_transformer_config_and_vice_versa():
    with pytest.raises(ConfigError):
        demo.unet_config("sd3")
    with pytest.raises(ConfigError):
        demo.transformer_config("sd15")
    assert type(demo.build_denoiser("sd3")).__name__ == "SD3Transformer2DModel"
    assert demo.build_vae("sd15").config.shift_factor is None  # the U-Net archs keep SD's unshifted latents


# --- training -----------------------------------------------------------------------------------------


def test_training_conditioning_is_the_extractors(built):
    """Training feeds the transformer what extraction will (families/sd3.py's encode_prompt call)."""
    from diffact.families.sd3 import SD3
    from diffact.models.train import text_conditioning

    pipe = demo.random_init_pipeline("sd3")
    trained_on = text_conditioning(pipe, "a photo", 64)
    extracted_with = SD3().encode_prompt(pipe, pipe.transformer, "a photo", 64, "cpu")
    assert trained_on.keys() == extracted_with.keys() == {"encoder_hidden_states", "pooled_projections"}
    for key in trained_on:
        assert torch.equal(trained_on[key], extracted_with[key]), key


def test_flow_sigmas_follow_the_shifted_schedule():
    from diffact.models.train import flow_sigmas
    from diffact.utils.seeding import torch_generator

    scheduler = demo.build_scheduler("sd3")
    t, sigma = flow_sigmas(scheduler, 4096, torch_generator(0, "x"))
    again, _ = flow_sigmas(scheduler, 4096, torch_generator(0, "x"))
    assert torch.equal(t, again) and t.dtype == torch.float32
    torch.testing.assert_close(t, sigma * 1000)
    assert 0 < sigma.min() and sigma.max() <= 1
    # u ~ logit-normal(0, 1) has median 1/2; the shift 3 maps it to 3·0.5 / (1 + 2·0.5) = 0.75
    assert abs(float(sigma.median()) - 0.75) < 0.02


def test_loss_csv_and_plot(built):
    losses = pd.read_csv(built["root"] / "sd3.csv")
    assert list(losses.columns) == ["step", "component", "loss"]
    counts = losses.groupby("component")["step"].agg(list).to_dict()
    vae_steps = list(range(1, FAST.vae_steps + 1))
    assert counts == {"vae_recon": vae_steps, "vae_kl": vae_steps, "vae_total": vae_steps,
                      "dit_flow_mse": list(range(1, FAST.unet_steps + 1))}
    assert losses["loss"].notna().all() and (losses["loss"] >= 0).all()
    assert (built["root"] / "sd3.png").stat().st_size > 0


def test_training_is_deterministic_and_other_seed_differs(built, tmp_path):
    """Same settings and seed => byte-identical saved folder; another seed => other weights."""
    from safetensors.torch import load_file

    build_demo_model("sd3", tmp_path / "again", FAST, progress=False)
    first, second = folder_bytes(built["sd3"]), folder_bytes(tmp_path / "again")
    assert first.keys() == second.keys()
    assert [name for name in first if first[name] != second[name]] == []
    weights = "transformer/diffusion_pytorch_model.safetensors"
    trained = load_file(built["sd3"] / weights)
    initial = demo.build_transformer("sd3", FAST.seed).state_dict()
    assert not all(torch.equal(trained[k], initial[k]) for k in initial)
    other = dataclasses.replace(FAST, seed=1, vae_steps=1, unet_steps=1)
    build_demo_model("sd3", tmp_path / "s1", other, progress=False)
    reseeded = load_file(tmp_path / "s1" / weights)
    assert not all(torch.equal(trained[k], reseeded[k]) for k in trained)


def test_training_lowers_the_flow_matching_loss(built):
    """The training loss falls, and so does the loss on a fixed held-out batch (same crops, σ, noise) from
    the seeded random transformer to the trained one."""
    from diffact.models.loading import load_pipeline
    from diffact.models.loading import scaled_latents
    from diffact.models.train import (expand_conditioning, flow_sigmas, load_training_images, sample_crops,
                                      text_conditioning)
    from diffact.utils.seeding import torch_generator

    dit = pd.read_csv(built["root"] / "sd3.csv").query("component == 'dit_flow_mse'")["loss"].tolist()
    assert dit[-1] < dit[0]

    trained = load_pipeline(str(built["sd3"]), device="cpu")
    x = sample_crops(load_training_images(32, 2.0), 8, 32, torch_generator(99, "held-out"))
    gen = torch_generator(99, "held-out", "noise")
    with torch.no_grad():
        z0 = scaled_latents(trained.vae, trained.vae.encode(x).latent_dist.mean)
        timesteps, sigmas = flow_sigmas(trained.scheduler, 8, gen)
        eps = torch.randn(z0.shape, generator=gen)
        zt = (1 - sigmas.view(-1, 1, 1, 1)) * z0 + sigmas.view(-1, 1, 1, 1) * eps
        cond = expand_conditioning(trained, text_conditioning(trained, FAST.prompt, 32), 8)

        def loss(model):
            pred = model(hidden_states=zt, timestep=timesteps, return_dict=False, **cond)[0]
            return float(torch.nn.functional.mse_loss(pred, eps - z0))

        before = loss(demo.build_transformer("sd3", FAST.seed).eval())
        after = loss(trained.transformer)
    assert after < before


def test_too_large_an_image_for_the_positional_embedding_is_a_config_error(tmp_path):
    big = dataclasses.replace(FAST, image_size=208)  # 208 / 2 / 2 = 52 tokens a side > pos_embed_max_size 48
    with pytest.raises(ConfigError, match="pos_embed_max_size"):
        build_demo_model("sd3", tmp_path / "big", big, progress=False)
    assert not (tmp_path / "big").exists()


# --- save / load / extract ------------------------------------------------------------------------------


def test_saved_sd3_loads_offline_and_extracts_through_the_api(built):
    import diffact
    from diffusers import AutoPipelineForImage2Image

    from diffact.data.shipped import shipped_image
    from diffact.models.loading import load_pipeline

    pipe = load_pipeline(str(built["sd3"]), device="cpu")
    assert type(pipe).__name__ == "StableDiffusion3Pipeline" and pipe.text_encoder_3 is None
    vae = pipe.vae.config
    assert vae.shift_factor != demo.SD3_VAE_SHIFT_PLACEHOLDER and vae.scaling_factor != 0.18215  # calibrated
    # the upstream extractor loads every model as an img2img pipeline (docs/paper.md §2.1)
    # (plain diffusers needs to be told the folder has no T5, as diffusers' SD3 docs load SD3 without T5)
    img2img = AutoPipelineForImage2Image.from_pretrained(built["sd3"], local_files_only=True, text_encoder_3=None,
                                                         tokenizer_3=None)
    assert type(img2img).__name__ == "StableDiffusion3Img2ImgPipeline"

    fx = diffact.FeatureExtractor.from_pretrained(str(built["sd3"]), layers=["vit-block0-self-q", "vit-block23-out"],
                                                  image_size=64, device="cpu")
    assert fx.family == "sd3"
    feats = fx([shipped_image("chelsea")])
    assert {name: tuple(f.shape) for name, f in feats.items()} == {"vit-block0-self-q": (1, 32, 16, 16),
                                                                   "vit-block23-out": (1, 32, 16, 16)}
    assert all(torch.isfinite(f).all() for f in feats.values())


def test_cli_layers_lists_24_blocks_of_7_activations(built, cli):
    done = cli("layers", "--model", built["sd3"], "--maps", "--resolution", "64", "--json")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(rows) == 24 * 7
    kinds = ("self-q", "self-k", "self-v", "self-map", "cross-map", "ffn-inner", "out")
    assert [r["name"] for r in rows[:7]] == [f"vit-block0-{k}" for k in kinds]
    assert rows[-1]["name"] == "vit-block23-out"
    assert {(r["height"], r["width"]) for r in rows} == {(16, 16)}
    # maps: over the 256 image keys / the 77 CLIP + 77 T5 text keys (SD3's training length; 333 with
    # encode_prompt's inference default of 256 T5 tokens, before 2026-12-07)
    assert {r["channels"] for r in rows if r["kind"] == "self-map"} == {256}
    assert {r["channels"] for r in rows if r["kind"] == "cross-map"} == {77 + 77}
    table = cli("layers", "--model", built["sd3"], "--maps")
    assert table.returncode == 0 and "# 168 activations" in table.stdout


def test_cli_builds_the_untrained_sd3_reference(tmp_path):
    from safetensors.torch import load_file

    from diffact.cli import main

    out = tmp_path / "sd3-random"
    rc = main(["build-demo-model", "--arch", "sd3", "--out", str(out), "--untrained", "--image-size", "32",
               "--loss-csv", str(tmp_path / "loss.csv"), "--loss-png", str(tmp_path / "loss.png"), "--no-progress",
               "--threads", "1"])
    assert rc == 0
    saved = load_file(out / "transformer" / "diffusion_pytorch_model.safetensors")
    initial = demo.build_transformer("sd3", 0).state_dict()
    assert saved.keys() == initial.keys() and all(torch.equal(saved[k], initial[k]) for k in initial)
    vae = json.loads((out / "vae" / "config.json").read_text())
    assert vae["shift_factor"] != demo.SD3_VAE_SHIFT_PLACEHOLDER and vae["scaling_factor"] != 0.18215
    assert len(pd.read_csv(tmp_path / "loss.csv")) == 0 and (tmp_path / "loss.png").stat().st_size > 0
