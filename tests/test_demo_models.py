"""The tiny SD1.5/SDXL-layout demo pipelines: layout, offline save/load, deterministic training, CLI
(the SD3-layout DiT: tests/test_demo_dit.py).

Training here runs for 2–3 steps on 32-px crops: enough to exercise every code path, not to learn.
"""

from __future__ import annotations

import dataclasses
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path

import pandas as pd
import pytest
import torch

from diffact.models import demo
from diffact.models.tokenizer import MODEL_MAX_LENGTH, build_clip_tokenizer, vocab_size
from diffact.models.train import DemoTrainSettings, build_demo_model, sample_crops
from diffact.utils.errors import ConfigError

# One thread: tests run beside other jobs, where OpenMP threads spinning on 2 busy cores cost ~5× time.
FAST = DemoTrainSettings(image_size=32, batch_size=2, vae_steps=2, unet_steps=3, seed=0, num_threads=1)


def unet_inputs(arch: str, batch: int = 1, latent: int = 32) -> dict:
    """Random U-Net inputs of the right shapes for ``arch`` (latent = image_size / 2)."""
    gen = torch.Generator().manual_seed(0)
    kwargs = {
        "sample": torch.randn(batch, 4, latent, latent, generator=gen),
        "timestep": torch.tensor([50] * batch),
        "encoder_hidden_states": torch.randn(batch, MODEL_MAX_LENGTH, demo.unet_config(arch)["cross_attention_dim"], generator=gen),
    }
    if arch == "sdxl":
        kwargs["added_cond_kwargs"] = {
            "text_embeds": torch.randn(batch, demo.TEXT_HIDDEN_SIZE, generator=gen),
            "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]] * batch),
        }
    return kwargs


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """Both U-Net archs trained for a few steps and saved, with their loss CSVs and plots."""
    root = tmp_path_factory.mktemp("demo_models")
    for arch in demo.UNET_ARCHS:
        build_demo_model(
            arch, root / arch, FAST, loss_csv=root / f"{arch}.csv", loss_png=root / f"{arch}.png", progress=False
        )
    return {"root": root, **{arch: root / arch for arch in demo.UNET_ARCHS}}


# --- tokenizer -----------------------------------------------------------------------------------


def test_tokenizer_pads_to_77_and_round_trips(tmp_path):
    from transformers import CLIPTokenizer

    tok = build_clip_tokenizer()
    ids = tok("a photo of a horse", padding="max_length", max_length=MODEL_MAX_LENGTH).input_ids
    assert len(ids) == MODEL_MAX_LENGTH and len(tok) == vocab_size() == 49408
    assert ids[0] == tok.bos_token_id and tok.eos_token_id in ids
    assert tok.decode(ids, skip_special_tokens=True) == "a photo of a horse"
    tok.save_pretrained(tmp_path)
    again = CLIPTokenizer.from_pretrained(tmp_path)
    assert again("Héllo, 3 horses!").input_ids == tok("Héllo, 3 horses!").input_ids
    assert again.model_max_length == MODEL_MAX_LENGTH


def test_tokenizer_gives_clip_ids_and_counts_the_paper_prompts():
    """CLIP's own ids (SD1.5's tokenizer gives these for "a photo of a cat"), the OpenCLIP pad "!" = 0, and the
    paper's longest prompts fit CLIP's 77 tokens (the old 514-token byte vocabulary cut the ADE prompt at 77 of 103)."""
    from diffact.models.tokenizer import OPENCLIP_PAD_TOKEN

    tok = build_clip_tokenizer()
    assert tok("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert build_clip_tokenizer(OPENCLIP_PAD_TOKEN).pad_token_id == 0
    spair = ("a highly realistic photo that may contain an aeroplane, a bicycle, a bird, a boat, a bottle, a bus, a car, "
             "a cat, a chair, a cow, a dog, a horse, a motorbike, a person, a plant within a pot, a sheep, a train, or a "
             "tv monitor.")
    assert len(tok(spair).input_ids) == 69


# --- layouts -------------------------------------------------------------------------------------


def test_sd15_layout_matches_stable_diffusion_15():
    unet = demo.build_unet("sd15")
    assert [type(b).__name__ for b in unet.down_blocks] == ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"]
    assert [type(b).__name__ for b in unet.up_blocks] == ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3
    assert type(unet.mid_block).__name__ == "UNetMidBlock2DCrossAttn"
    # up-level0 has 3 ResModules and no ViT; up-levels 1-3 have 3 of each, one basic block per ViT.
    assert len(unet.up_blocks[0].resnets) == 3 and getattr(unet.up_blocks[0], "attentions", None) is None
    for block in unet.up_blocks[1:]:
        assert len(block.resnets) == 3 and len(block.attentions) == 3
        assert all(len(vit.transformer_blocks) == 1 for vit in block.attentions)
    for block in unet.down_blocks:
        assert len(block.resnets) == 2
    vits = [m for m in unet.modules() if type(m).__name__ == "Transformer2DModel"]
    assert len(vits) == 16  # as SD1.5 (docs/paper.md §2.3)
    assert demo.count_parameters(unet) <= 3_000_000


def test_sdxl_layout_matches_sdxl():
    unet = demo.build_unet("sdxl")
    assert [type(b).__name__ for b in unet.down_blocks] == ["DownBlock2D"] + ["CrossAttnDownBlock2D"] * 2
    assert [type(b).__name__ for b in unet.up_blocks] == ["CrossAttnUpBlock2D"] * 2 + ["UpBlock2D"]
    assert [len(b.resnets) for b in unet.up_blocks] == [3, 3, 3]
    # SDXL's basic blocks per ViT: 10 at level 2 (down-level2, mid, up-level0) and 2 at level 1
    assert [len(v.transformer_blocks) for v in unet.up_blocks[0].attentions] == [10, 10, 10]
    assert [len(v.transformer_blocks) for v in unet.up_blocks[1].attentions] == [2, 2, 2]
    assert [len(v.transformer_blocks) for v in unet.down_blocks[2].attentions] == [10, 10]
    assert len(unet.mid_block.attentions[0].transformer_blocks) == 10
    assert all(v.use_linear_projection for v in unet.up_blocks[0].attentions)
    vits = [m for m in unet.modules() if type(m).__name__ == "Transformer2DModel"]
    assert len(vits) == 11  # as SDXL (docs/paper.md §2.3)
    assert unet.config.addition_embed_type == "text_time"
    assert unet.add_embedding.linear_1.in_features == demo.TEXT_HIDDEN_SIZE + 6 * demo.SDXL_TIME_EMBED_DIM


def test_sdxl_catalog_has_the_real_sdxl_names_so_every_paper_set_runs_in_the_demo():
    """The tiny SDXL U-Net holds every activation name of SDXL-base-1.0 (472 candidates, no maps), so each
    SDXL layer set the paper names (Ours-XL: up-level0 blocks 5 and 7) resolves on it (#16 point 8)."""
    from diffact.families.unet import catalog
    from diffact.extract.layersets import available_sets, resolve_set
    from diffact.models.configs import build_unet, reference_unet_config

    tiny = demo.build_unet("sdxl")
    real = build_unet(reference_unet_config("stabilityai/stable-diffusion-xl-base-1.0"))
    names = [a.name for a in catalog(tiny, include_maps=True)]
    assert names == [a.name for a in catalog(real, include_maps=True)]
    assert len(catalog(tiny, include_maps=False)) == 472
    for layer_set in available_sets("sdxl"):
        assert resolve_set(tiny, "sdxl", layer_set) == resolve_set(real, "sdxl", layer_set), layer_set


@pytest.mark.parametrize("arch", demo.UNET_ARCHS)
def test_unet_forward_shape_at_64px(arch):
    """64-px images -> 32×32 latents; the U-Net maps them to a same-shaped noise prediction."""
    unet = demo.build_unet(arch).eval()
    assert demo.VAE_DOWNSAMPLING_FACTOR == 2
    with torch.no_grad():
        out = unet(**unet_inputs(arch, batch=2, latent=64 // demo.VAE_DOWNSAMPLING_FACTOR)).sample
    assert out.shape == (2, 4, 32, 32) and torch.isfinite(out).all()


def test_same_seed_same_random_weights_other_seed_differs():
    a, b, c = demo.build_unet("sd15", 0), demo.build_unet("sd15", 0), demo.build_unet("sd15", 1)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_unknown_arch_is_a_config_error():
    with pytest.raises(ConfigError):
        demo.random_init_pipeline("sd21")


# --- build / save / load ---------------------------------------------------------------------------


@pytest.mark.parametrize("arch", demo.UNET_ARCHS)
def test_saved_pipeline_loads_offline_like_a_hub_model(built, arch):
    from diffusers import DiffusionPipeline

    folder = built[arch]
    assert (folder / "model_index.json").is_file()
    assert not [p for p in folder.parent.iterdir() if p.name.endswith(".part")]  # atomic: no leftovers
    pipe = DiffusionPipeline.from_pretrained(folder, local_files_only=True)
    expected = {"sd15": "StableDiffusionPipeline", "sdxl": "StableDiffusionXLPipeline"}[arch]
    assert type(pipe).__name__ == expected
    assert type(pipe.scheduler).__name__ == {"sd15": "PNDMScheduler", "sdxl": "EulerDiscreteScheduler"}[arch]
    assert pipe.scheduler.config.beta_schedule == "scaled_linear" and pipe.scheduler.config.num_train_timesteps == 1000
    assert pipe.vae.config.scaling_factor != 0.18215  # calibrated to 1/std of the latents
    # the VAE maps 64-px images to 4×32×32 latents
    with torch.no_grad():
        latents = pipe.vae.encode(torch.zeros(1, 3, 64, 64)).latent_dist.mean
        out = pipe.unet(**unet_inputs(arch, latent=latents.shape[-1])).sample
    assert latents.shape == (1, 4, 32, 32) and out.shape == (1, 4, 32, 32)
    # the pipelines' own text encoding produces what the U-Net expects
    if arch == "sdxl":
        embeds, _, pooled, _ = pipe.encode_prompt("a photo", device="cpu", do_classifier_free_guidance=False)
        assert embeds.shape == (1, 77, 64) and pooled.shape == (1, 32)
    else:
        embeds, _ = pipe.encode_prompt("a photo", "cpu", 1, False)
        assert embeds.shape == (1, 77, 32)


@pytest.mark.parametrize("arch", demo.UNET_ARCHS)
def test_saved_pipeline_loads_as_img2img(built, arch):
    """The upstream extractor loads every model as an img2img pipeline (docs/paper.md §2.1)."""
    from diffusers import AutoPipelineForImage2Image

    pipe = AutoPipelineForImage2Image.from_pretrained(built[arch], local_files_only=True)
    expected = {"sd15": "StableDiffusionImg2ImgPipeline", "sdxl": "StableDiffusionXLImg2ImgPipeline"}[arch]
    assert type(pipe).__name__ == expected


@pytest.mark.parametrize("arch", demo.UNET_ARCHS)
def test_training_is_deterministic(built, tmp_path, arch):
    """Same settings and seed => byte-identical saved folder (weights, configs, tokenizers)."""
    build_demo_model(arch, tmp_path / arch, FAST, progress=False)
    first, second = folder_bytes(built[arch]), folder_bytes(tmp_path / arch)
    assert first.keys() == second.keys()
    assert [name for name in first if first[name] != second[name]] == []


def test_training_changes_weights_and_other_seed_differs(built, tmp_path):
    from safetensors.torch import load_file

    trained = load_file(built["sd15"] / "unet" / "diffusion_pytorch_model.safetensors")
    initial = demo.build_unet("sd15", FAST.seed).state_dict()
    assert not all(torch.equal(trained[k], initial[k]) for k in initial)
    other = dataclasses.replace(FAST, seed=1, vae_steps=1, unet_steps=1)
    build_demo_model("sd15", tmp_path / "s1", other, progress=False)
    reseeded = load_file(tmp_path / "s1" / "unet" / "diffusion_pytorch_model.safetensors")
    assert not all(torch.equal(trained[k], reseeded[k]) for k in trained)


@pytest.mark.parametrize("arch", demo.UNET_ARCHS)
def test_loss_csv_has_one_row_per_step_and_component(built, arch):
    losses = pd.read_csv(built["root"] / f"{arch}.csv")
    assert list(losses.columns) == ["step", "component", "loss"]
    counts = losses.groupby("component")["step"].agg(list).to_dict()
    vae_steps = list(range(1, FAST.vae_steps + 1))
    assert counts == {"vae_recon": vae_steps, "vae_kl": vae_steps, "vae_total": vae_steps,
                      "unet_mse": list(range(1, FAST.unet_steps + 1))}
    assert losses["loss"].notna().all() and (losses["loss"] >= 0).all()
    assert (built["root"] / f"{arch}.png").stat().st_size > 0


def test_crops_have_requested_size_and_are_seeded():
    from diffact.models.train import load_training_images
    from diffact.utils.seeding import torch_generator

    images = load_training_images(32, 2.0)
    # every shipped image is larger than 2 × 32 px, so each is shrunk to a 64-px short side
    assert images and all(min(img.shape[1:]) == 64 for img in images)
    a = sample_crops(images, 3, 32, torch_generator(0, "x"))
    b = sample_crops(images, 3, 32, torch_generator(0, "x"))
    assert a.shape == (3, 3, 32, 32) and torch.equal(a, b) and a.min() >= -1 and a.max() <= 1


# --- untrained reference and CLI ---------------------------------------------------------------------


def test_cli_untrained_saves_random_weights(tmp_path):
    from safetensors.torch import load_file

    from diffact.cli import main

    out = tmp_path / "sd15-random"
    rc = main(["build-demo-model", "--arch", "sd15", "--out", str(out), "--untrained", "--image-size", "32",
               "--loss-csv", str(tmp_path / "loss.csv"), "--loss-png", str(tmp_path / "loss.png"), "--no-progress",
               "--threads", "1"])
    assert rc == 0
    saved = load_file(out / "unet" / "diffusion_pytorch_model.safetensors")
    initial = demo.random_init_pipeline("sd15", 0).unet.state_dict()
    assert all(torch.equal(saved[k], initial[k]) for k in initial)
    assert list(pd.read_csv(tmp_path / "loss.csv").columns) == ["step", "component", "loss"]
    assert len(pd.read_csv(tmp_path / "loss.csv")) == 0


def test_cli_bad_settings_fail_cleanly(tmp_path, capsys):
    from diffact.cli import main

    rc = main(["build-demo-model", "--arch", "sd15", "--out", str(tmp_path / "x"), "--image-size", "30", "--no-progress"])
    assert rc == 2 and "image_size" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    with pytest.raises(SystemExit):
        main(["build-demo-model", "--arch", "sd21", "--out", str(tmp_path / "y")])
