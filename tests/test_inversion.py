"""Optional DDIM inversion to t instead of forward noise (module docstring of diffact.extract.pipeline)."""

import math
from pathlib import Path

import pytest
import torch
import yaml

from diffact.extract.pipeline import DiffusionFeatureExtractor, ExtractionSettings, inversion_timesteps
from diffact.models.loading import load_pipeline
from diffact.utils.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["unet-in", "up-level1-repeat1-vit-block0-cross-q"]


@pytest.fixture(scope="module")
def sd15(tiny_pipeline_dirs):
    return load_pipeline(str(tiny_pipeline_dirs["sd15"]), device="cpu")


def _images(n=2, size=32, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _with_scheduler(pipe, scheduler):
    return type(pipe)(**{**pipe.components, "scheduler": scheduler})


def test_inversion_path_on_the_grid():
    assert inversion_timesteps(51, 10) == [0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 51]  # ⌊k·51/10⌋
    assert inversion_timesteps(50, 1) == [0, 50]
    with pytest.raises(ConfigError, match="inversion_steps=60"):
        inversion_timesteps(50, 60)
    with pytest.raises(ConfigError, match="extraction.inversion must be"):
        ExtractionSettings(inversion="ddpm")
    with pytest.raises(ConfigError, match="deterministic"):
        ExtractionSettings(inversion="ddim", ensemble=2)


def _by_hand(pipe, x0, path, prediction):
    """DDIM Eq. 12 (σ = 0) towards more noise, written out: ε, x̂_0, then x at the next timestep."""
    cond = pipe.encode_prompt(prompt="a photo", device="cpu", num_images_per_prompt=1,
                              do_classifier_free_guidance=False)[0].expand(x0.shape[0], -1, -1)
    alphas = pipe.scheduler.alphas_cumprod
    x = x0
    for here, there in zip(path[:-1], path[1:]):
        a_here = 1.0 if here == 0 else float(alphas[here])
        a_there = float(alphas[there])
        out = pipe.unet(x, torch.tensor([here] * x.shape[0]), encoder_hidden_states=cond).sample
        eps = out if prediction == "epsilon" else math.sqrt(a_here) * out + math.sqrt(1 - a_here) * x
        x0_hat = (x - math.sqrt(1 - a_here) * eps) / math.sqrt(a_here)
        x = math.sqrt(a_there) * x0_hat + math.sqrt(1 - a_there) * eps
    return x


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
@torch.no_grad()
def test_inversion_steps_equal_the_ddim_formula(sd15, prediction):
    pipe = sd15
    if prediction == "v_prediction":
        v_scheduler = type(sd15.scheduler).from_config(sd15.scheduler.config, prediction_type="v_prediction")
        pipe = _with_scheduler(sd15, v_scheduler)
    settings = ExtractionSettings(t=50, prompt="a photo", image_size=32, vae_mode="mean", inversion="ddim",
                                  inversion_steps=2)
    seen = []
    hook = pipe.unet.register_forward_pre_hook(lambda m, args: seen.append(int(args[1][0])) or None)
    try:
        ex = DiffusionFeatureExtractor(pipe, LAYERS, settings)
        feats = ex(_images(), ["a", "b"])
    finally:
        hook.remove()
    assert ex.timestep == 51 and ex.inversion_timesteps == [0, 25, 51]  # PNDM grid: t=50 → 51
    assert seen == [0, 25, 51]  # two inversion calls, then the capture pass at the grid timestep
    x0 = ex.encode_latents(_images(), ["a", "b"])
    expected = _by_hand(pipe, x0, [0, 25, 51], prediction)
    torch.testing.assert_close(feats["unet-in"], expected, atol=1e-5, rtol=1e-4)  # the U-Net's input is x_t
    assert feats[LAYERS[1]].shape == (2, 64, 4, 4)


@torch.no_grad()
def test_inverted_features_do_not_depend_on_the_noise_seed(sd15):
    def extract(seed, inversion):
        settings = ExtractionSettings(t=50, prompt="a photo", image_size=32, vae_mode="mean", noise_seed=seed,
                                      inversion=inversion, inversion_steps=3)
        return DiffusionFeatureExtractor(sd15, LAYERS, settings)(_images(), ["a", "b"])

    a, b = extract(1, "ddim"), extract(2, "ddim")
    noised = extract(1, "none")
    for name in LAYERS:
        assert torch.equal(a[name], b[name])
        assert a[name].shape == noised[name].shape and not torch.allclose(a[name], noised[name])
    assert not torch.equal(noised["unet-in"], extract(2, "none")["unet-in"])  # the noise seed does act without it


def test_sdxl_inversion_store_and_flow_models_refused(tiny_pipeline_dirs, image_folder, tmp_path):
    from diffusers import FlowMatchEulerDiscreteScheduler

    from diffact.data.registry import folder_images
    from diffact.extract.run import extract_to_store

    sdxl = load_pipeline(str(tiny_pipeline_dirs["sdxl"]), device="cpu")
    settings = ExtractionSettings(t=50, image_size=32, inversion="ddim", inversion_steps=4)
    images = folder_images(image_folder)[:1]
    store = extract_to_store(sdxl, ["up-level0-repeat0-vit-block1-out"], images, tmp_path / "s", {"k": 1}, settings)
    assert store.meta["recipe"]["grid_timestep"] == 50  # Euler, leading spacing
    assert store.meta["recipe"]["inversion_timesteps"] == [0, 12, 25, 37, 50]
    assert store.shape("up-level0-repeat0-vit-block1-out") == (64, 4, 4)
    flow = _with_scheduler(sdxl, FlowMatchEulerDiscreteScheduler())
    with pytest.raises(ConfigError, match="flow-matching scheduler"):
        DiffusionFeatureExtractor(flow, ["unet-in"], settings)


def test_inversion_in_config_cli_and_key(tiny_pipeline_dirs, image_folder, tmp_path, cli):
    from diffact import workflow as wf

    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    plain = wf.store_dir(config, "spair", "sd15-tiny", "screen")
    config["extraction"].update(inversion="ddim", inversion_steps=5)
    assert wf.store_dir(config, "spair", "sd15-tiny", "screen") != plain
    assert "--inversion ddim --inversion-steps 5" in wf.extract_args(config, "spair", "sd15-tiny", "screen")
    bad = cli("extract", "--model", tiny_pipeline_dirs["sd15"], "--family", "sd15", "--layers", "unet-in",
              "--dataset-kind", "folder", "--dataset-root", image_folder, "--out", tmp_path / "s",
              "--image-size", "32", "--inversion", "ddim", "--ensemble", "2")
    assert bad.returncode == 2 and "deterministic" in bad.stderr
