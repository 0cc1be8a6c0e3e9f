"""The demo denoiser's learning-rate schedule (warm-up, cosine decay, its own peak) and the held-out denoising loss
that compares trained demo models (diffact.models.train)."""

from __future__ import annotations

import dataclasses
import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pandas as pd
import pytest
import torch

from diffact.models import demo
from diffact.models.train import (DemoTrainSettings, build_demo_model, heldout_loss, lr_factor, mean_heldout_loss,
                                  train_denoiser)
from diffact.utils.errors import ConfigError

FAST = DemoTrainSettings(image_size=32, batch_size=2, vae_steps=1, unet_steps=4, seed=0, num_threads=1)


def test_lr_factor_warms_up_linearly_then_decays_by_cosine_to_zero():
    assert [lr_factor(s, 6, 2, "cosine") for s in (1, 2)] == [0.5, 1.0]
    decay = [lr_factor(s, 6, 2, "cosine") for s in (3, 4, 5, 6)]
    assert decay == pytest.approx([0.5 * (1 + math.cos(math.pi * k / 4)) for k in (1, 2, 3, 4)])
    assert decay[-1] == pytest.approx(0.0) and decay == sorted(decay, reverse=True)
    assert [lr_factor(s, 6, 2, "constant") for s in range(1, 7)] == [0.5, 1, 1, 1, 1, 1]
    assert all(lr_factor(s, 6) == 1.0 for s in range(1, 7))  # the default: the models of before, bit for bit


def recorded_lrs(monkeypatch, settings, arch="sd15") -> list[float]:
    """The learning rate AdamW steps with at each denoiser step of ``settings``."""
    from diffact.models.train import deterministic_torch, load_training_images

    seen = []
    original = torch.optim.AdamW.step

    def step(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    with deterministic_torch(1):
        pipe = demo.random_init_pipeline(arch, 0)
        pipe.vae.requires_grad_(False)
        train_denoiser(pipe, load_training_images(32, 2.0), settings, progress=False)
    return seen


@pytest.mark.parametrize("arch", ["sd15", "sd3"])
def test_denoiser_steps_with_the_scheduled_learning_rate(monkeypatch, arch):
    settings = dataclasses.replace(FAST, unet_lr=2e-3, warmup_steps=1, lr_schedule="cosine")
    lrs = recorded_lrs(monkeypatch, settings, arch)
    assert lrs == pytest.approx([2e-3, 2e-3 * 0.75, 2e-3 * 0.25, 0.0])
    assert recorded_lrs(monkeypatch, FAST, arch) == [FAST.lr] * FAST.unet_steps


def test_bad_schedule_settings_are_config_errors():
    with pytest.raises(ConfigError, match="lr_schedule"):
        dataclasses.replace(FAST, lr_schedule="step").validate()
    with pytest.raises(ConfigError, match="warmup_steps"):
        dataclasses.replace(FAST, warmup_steps=FAST.unet_steps + 1).validate()
    with pytest.raises(ConfigError, match="unet_lr"):
        dataclasses.replace(FAST, unet_lr=0.0).validate()


@pytest.mark.parametrize("arch", ["sd15", "sd3"])
def test_heldout_loss_is_fixed_and_falls_with_training(tmp_path, arch):
    """The same model gets the same numbers twice; the trained model scores below its random initialisation."""
    settings = dataclasses.replace(FAST, unet_steps=6, unet_lr=3e-3, warmup_steps=1, lr_schedule="cosine")
    out = build_demo_model(arch, tmp_path / arch, settings, heldout_csv=tmp_path / "heldout.csv", progress=False)
    from diffact.models.loading import load_pipeline

    pipe = load_pipeline(str(out), dtype="float32", device="cpu")
    before = {k: v.clone() for k, v in demo_denoiser(pipe).state_dict().items()}
    first, second = heldout_loss(pipe, settings, crops=4, points=3), heldout_loss(pipe, settings, crops=4, points=3)
    assert first == second and len(first) == 3
    assert all(torch.equal(v, demo_denoiser(pipe).state_dict()[k]) for k, v in before.items())
    if arch == "sd3":  # the σ grid falls as the quantiles rise (the schedule runs from σ = 1 down)
        sigmas = [row["sigma"] for row in first]
        assert sigmas == sorted(sigmas, reverse=True) and 1 > sigmas[0] > sigmas[-1] > 0
    else:
        assert [row["timestep"] for row in first] == [166, 500, 833] and first[0]["sigma"] is None
    random = demo.random_init_pipeline(arch, settings.seed)
    random.vae = pipe.vae  # the same latents: only the denoiser differs
    assert mean_heldout_loss(first) < mean_heldout_loss(heldout_loss(random, settings, crops=4, points=3))
    written = pd.read_csv(tmp_path / "heldout.csv")
    assert list(written.columns) == ["grid_point", "timestep", "sigma", "loss"] and len(written) == 8


def demo_denoiser(pipe):
    from diffact.families.registry import denoiser_of

    return denoiser_of(pipe)


def test_cli_heldout_loss_prints_the_mean_and_writes_the_grid(tmp_path, capsys):
    from diffact.cli import main

    out = tmp_path / "sd15"
    assert main(["build-demo-model", "--arch", "sd15", "--out", str(out), "--image-size", "32", "--batch-size", "2",
                 "--vae-steps", "1", "--unet-steps", "2", "--lr-schedule", "cosine", "--warmup-steps", "1",
                 "--unet-lr", "2e-3", "--no-progress", "--threads", "1"]) == 0
    capsys.readouterr()
    assert main(["demo-heldout-loss", "--model", str(out), "--csv", str(tmp_path / "h.csv"), "--image-size", "32"]) == 0
    printed = float(capsys.readouterr().out.strip())
    rows = pd.read_csv(tmp_path / "h.csv")
    assert len(rows) == 8 and printed == pytest.approx(rows["loss"].mean(), rel=1e-5)


def test_denoiser_batch_is_its_own_and_the_vae_keeps_batch_size(monkeypatch, tmp_path):
    import diffact.models.train as train

    requested = []
    original = train.sample_crops

    def sample_crops(images, batch_size, image_size, generator):
        requested.append(batch_size)
        return original(images, batch_size, image_size, generator)

    monkeypatch.setattr(train, "sample_crops", sample_crops)
    settings = dataclasses.replace(FAST, batch_size=3, unet_batch_size=2, vae_steps=2, unet_steps=3)
    train.train_demo_pipeline("sd15", settings, progress=False)
    calibration = 64  # calibrate_latent_scale's crops
    assert requested == [3, 3, calibration, 2, 2, 2]


def test_foreach_optimiser_gives_the_per_parameter_loop_s_bits(monkeypatch, tmp_path):
    """AdamW and gradient clipping run their multi-tensor (foreach) kernels for speed; forced back to the
    per-parameter loop (torch's CPU default), the saved model is byte-identical."""
    build_demo_model("sd15", tmp_path / "foreach", FAST, progress=False)
    adamw, clip = torch.optim.AdamW, torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.optim, "AdamW", lambda params, **kw: adamw(params, **{**kw, "foreach": False}))
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_",
                        lambda params, max_norm, **kw: clip(params, max_norm, **{**kw, "foreach": False}))
    build_demo_model("sd15", tmp_path / "loop", FAST, progress=False)
    for path in sorted((tmp_path / "foreach").rglob("*.safetensors")):
        assert path.read_bytes() == (tmp_path / "loop" / path.relative_to(tmp_path / "foreach")).read_bytes()
