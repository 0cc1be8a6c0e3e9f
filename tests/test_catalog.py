"""Catalog names, counts and shapes (docs/paper.md §2.2, §2.3, §2.6)."""

import pytest
import torch

from conftest import sd15_inputs, sdxl_inputs
from diffact.families.unet import candidate_count, catalog
from diffact.extract.hooks import ActivationCapture
from diffact.extract.layersets import available_sets, channel_total, resolve_layers_arg, resolve_set
from diffact.models.configs import build_unet, reference_unet_config
from diffact.utils.errors import ConfigError, LayerError


@pytest.fixture(scope="module")
def full_sd15():
    return build_unet(reference_unet_config("stable-diffusion-v1-5/stable-diffusion-v1-5"))


@pytest.fixture(scope="module")
def full_sdxl():
    return build_unet(reference_unet_config("stabilityai/stable-diffusion-xl-base-1.0"))


def test_full_size_counts_equal_the_paper_code(full_sd15, full_sdxl):
    sd21 = build_unet(reference_unet_config("stabilityai/stable-diffusion-2-1-base"))
    for unet in (full_sd15, sd21):
        assert candidate_count(unet) == 164  # 16×6 + 16 + 22×2 + 3 + 3 + 2
        assert candidate_count(unet, include_maps=True, include_unet_out=True) == 197  # config_15_full.json
    assert candidate_count(full_sdxl, include_unet_out=True) == 472  # 70×6 + 11 + 17×2 + 2 + 2 + 3
    assert candidate_count(full_sdxl, include_maps=True, include_unet_out=True) == 612  # config_xl_full.json


def test_named_sets_channel_totals(full_sd15, full_sdxl):
    def total(unet, fam, name):
        return channel_total(unet, resolve_set(unet, fam, name))

    assert total(full_sd15, "sd15", "legacy") == 3520
    assert total(full_sd15, "sd15", "practical") == 3520
    assert total(full_sd15, "sd15", "amalgamation") == 3034  # 2880 + 154 aggregated map channels at 512 px
    assert total(full_sdxl, "sdxl", "practical") == 3840
    assert total(full_sdxl, "sdxl", "legacy") == 2240
    assert total(full_sdxl, "sdxl", "amalgamation") == 1280
    assert len(resolve_set(full_sdxl, "sdxl", "pool")) == 279
    assert len(resolve_set(full_sdxl, "sdxl", "analysis")) == 146


def test_full_size_shapes(full_sd15, full_sdxl):
    rows = {a.name: a.as_row((64, 64), text_tokens=77) for a in catalog(full_sd15)}
    assert (rows["up-level1-repeat1-vit-block0-cross-q"]["channels"], rows["up-level1-repeat1-vit-block0-cross-q"]["height"]) == (1280, 16)
    assert (rows["up-level3-repeat0-vit-block0-self-k"]["channels"], rows["up-level3-repeat0-vit-block0-self-k"]["height"]) == (320, 64)
    assert rows["up-level2-upsampler-out"]["height"] == 64 and rows["up-level2-upsampler-out"]["channels"] == 640
    assert rows["up-level1-repeat1-vit-block0-ffn-inner"]["channels"] == 5120
    assert rows["up-level1-repeat1-vit-block0-cross-map"]["channels"] == 77
    assert rows["up-level1-repeat1-vit-block0-self-map"]["channels"] == 256
    xl = {a.name: a.as_row((128, 128)) for a in catalog(full_sdxl)}
    assert (xl["up-level0-repeat0-vit-block7-out"]["channels"], xl["up-level0-repeat0-vit-block7-out"]["height"]) == (1280, 32)
    assert (xl["up-level1-repeat0-vit-block0-cross-q"]["channels"], xl["up-level1-repeat0-vit-block0-cross-q"]["height"]) == (640, 64)


def test_unknown_layer_names_suggest_close_ones(tiny_sd15_unet):
    with pytest.raises(LayerError, match="closest valid names: up-level1-repeat1-vit-block0-cross-q"):
        ActivationCapture(tiny_sd15_unet, ["up-level1-repeat1-vit-block0-cros-q"])
    with pytest.raises(ConfigError, match="no layer set 'nope'"):
        resolve_set(tiny_sd15_unet, "sd15", "nope")
    assert "practical" in available_sets("sd15")


@pytest.mark.parametrize("which", ["sd15", "sdxl"])
def test_catalog_matches_captured_shapes(which, tiny_sd15_unet, tiny_sdxl_unet):
    unet, inputs = (tiny_sd15_unet, sd15_inputs(batch=2)) if which == "sd15" else (tiny_sdxl_unet, sdxl_inputs(batch=2))
    entries = catalog(unet)
    with ActivationCapture(unet, [a.name for a in entries], early_exit=False) as cap:
        with torch.no_grad():
            feats = cap.run(lambda: unet(**inputs))
    assert list(feats) == [a.name for a in entries]  # forward order
    for act in entries:
        row = act.as_row((16, 16), text_tokens=7)
        assert tuple(feats[act.name].shape) == (2, row["channels"], row["height"], row["width"]), act.name


def test_layers_arg_accepts_set_names_and_lists(tiny_sd15_unet):
    assert resolve_layers_arg(tiny_sd15_unet, "sd15", "practical")[0] == "up-level1-repeat1-vit-block0-cross-q"
    names = resolve_layers_arg(tiny_sd15_unet, "sd15", "up-level2-upsampler-out,down-level0-repeat0-res-out")
    assert names == ["down-level0-repeat0-res-out", "up-level2-upsampler-out"]


def test_amalgamation_adds_the_aggregated_up_cross_maps(full_sd15):
    names = resolve_set(full_sd15, "sd15", "amalgamation")
    assert names[-1] == "attn-up-cross"
    assert channel_total(full_sd15, names, image_size=512) == 3034  # 2880 + 2 sizes × 77 tokens (docs/paper.md §2.6)


def test_aggregated_maps_average_per_size(tiny_sd15_unet):
    from diffact.extract.aggregate import aggregate, member_maps

    inputs = sd15_inputs(size=16)
    members = [m.name for m in member_maps(tiny_sd15_unet, "attn-up-cross")]
    with ActivationCapture(tiny_sd15_unet, ["attn-up-cross", *members], early_exit=False) as cap:
        with torch.no_grad():
            feats = cap.run(lambda: tiny_sd15_unet(**inputs))
    # latent 16: sizes 4 (up-level1, 3 maps) and 8 (up-level2, 3 maps) qualify; 16 (up-level3) does not
    expected = aggregate({m: feats[m] for m in members}, (16, 16))
    assert feats["attn-up-cross"].shape == (1, 2 * 7, 16, 16)
    torch.testing.assert_close(feats["attn-up-cross"], expected)
    level1 = torch.stack([feats[m] for m in members if m.startswith("up-level1")]).mean(0)
    torch.testing.assert_close(feats["attn-up-cross"][:, :7, ::4, ::4], level1)
