"""Resize policies of the extraction (paper §2.1: square stretch; option: aspect-preserving pad) and the
keypoint mapping that must follow them."""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from diffact.data.images import ResizePolicy, load_image_tensor, save_jpeg, to_model_tensor
from diffact.extract.pipeline import ExtractionSettings
from diffact.tasks.correspondence.matching import eval_pixels_to_image, keypoints_to_eval_pixels, nn_transfer
from diffact.utils.errors import ConfigError, DataError

ROOT = Path(__file__).resolve().parents[1]


def test_aspect_placement_by_hand():
    # 200×100 image on a 64 canvas: scale 64/200 = 0.32 → content 64×32, centred → rows 16..47.
    policy = ResizePolicy("aspect", 64)
    assert policy.content_size(200, 100) == (64, 32)
    assert policy.placement(200, 100) == (0.32, 0.32, 0, 16)
    kps = np.array([[100.0, 50.0], [50.0, 25.0]])
    np.testing.assert_allclose(policy.to_canvas(kps, 200, 100), [[32, 32], [16, 24]])
    # on a 128 eval grid (canvas × 2): (64, 64) and (32, 48); the square stretch would give (64, 64), (32, 32)
    assert keypoints_to_eval_pixels(kps, (200, 100), 128, policy).tolist() == [[64, 64], [32, 48]]
    assert keypoints_to_eval_pixels(kps, (200, 100), 128).tolist() == [[64, 64], [32, 32]]
    np.testing.assert_allclose(eval_pixels_to_image(np.array([[32, 48]]), (200, 100), 128, policy), [[50, 25]])
    # rounding: 300×200 → h' = round(42.67) = 43, offset ⌊21/2⌋ = 10, so y scales by 43/200, not 64/300
    assert ResizePolicy("aspect", 64).placement(300, 200) == (64 / 300, 43 / 200, 0, 10)
    # the square policy is the paper's stretch
    assert ResizePolicy("square", 64).placement(200, 100) == (0.32, 0.64, 0, 0)
    with pytest.raises(DataError, match="resize policy"):
        ResizePolicy("crop", 64)


def test_aspect_tensor_is_padded_and_the_marker_lands_where_the_keypoint_maps():
    image = np.zeros((80, 160, 3), np.uint8)  # H×W = 80×160
    image[16:24, 116:124] = 255  # a white marker around keypoint (120, 20)
    square = to_model_tensor(image, 64)
    aspect = to_model_tensor(image, 64, "aspect")
    assert square.shape == aspect.shape == (3, 64, 64)
    # content 64×32 at rows 16..47; the rest is mid-grey, exactly 0 in [-1, 1]
    assert torch.count_nonzero(aspect[:, :16]) == 0 and torch.count_nonzero(aspect[:, 48:]) == 0
    assert aspect[:, 16:48].min() < -0.9  # the black content
    for tensor, policy in ((aspect, ResizePolicy("aspect", 64)), (square, ResizePolicy("square", 64))):
        weight = (tensor[0] + 1).clamp(min=0)  # the marker's brightness; black content and grey padding ~0 or 1
        weight = torch.where(weight > 1.5, weight, torch.zeros(()))
        rows, cols = torch.meshgrid(torch.arange(64) + 0.5, torch.arange(64) + 0.5, indexing="ij")
        centre = (float((weight * cols).sum() / weight.sum()), float((weight * rows).sum() / weight.sum()))
        expected = policy.to_canvas(np.array([[120.0, 20.0]]), 160, 80)[0]  # the marker's centre, mapped
        np.testing.assert_allclose(centre, expected, atol=0.5, err_msg=policy.mode)


def _relative_position_features(size: int, policy: ResizePolicy, width: int, height: int) -> torch.Tensor:
    """C×S×S map whose feature at each canvas pixel encodes the *relative* image position it shows
    (random Fourier features; zero on the padding), so the same relative point matches across images."""
    omega = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 6
    centres = np.stack(np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5, indexing="xy"), -1).reshape(-1, 2)
    original = policy.from_canvas(centres, width, height) / np.array([width, height])
    phase = torch.from_numpy(original) @ omega.T
    feats = torch.cat([phase.cos(), phase.sin()], 1)
    inside = torch.from_numpy(((original >= 0) & (original <= 1)).all(1))
    feats[~inside] = 0
    return feats.T.reshape(-1, size, size).float()


def test_nn_transfer_maps_keypoints_through_the_aspect_canvas():
    policy = ResizePolicy("aspect", 64)
    src_size, trg_size = (160, 80), (90, 120)  # landscape 2:1 and portrait 3:4: different paddings
    src = _relative_position_features(64, policy, *src_size)
    trg = _relative_position_features(64, policy, *trg_size)
    kps = np.array([[40.0, 20.0], [120.0, 60.0], [80.0, 10.0]])
    expected = kps / np.array(src_size) * np.array(trg_size)  # the same relative position in the target
    predicted = nn_transfer(src, trg, kps, src_size, trg_size, eval_size=64, resize=policy)
    np.testing.assert_allclose(predicted, expected, atol=2.5)  # one eval pixel = 1.875 target pixels
    wrong = nn_transfer(src, trg, kps, src_size, trg_size, eval_size=64)  # the square mapping on these maps
    assert np.abs(wrong - expected).max() > 10


def test_settings_validate_resize_and_keep_old_keys():
    with pytest.raises(ConfigError, match="extraction.resize"):
        ExtractionSettings(resize="crop")
    old = ExtractionSettings(t=50, prompt="a photo", image_size=64)
    # options added later are left out of the key at their default: stores made before keep their key
    assert set(old.key_dict()) == {"t", "prompt", "image_size", "noise_seed", "ensemble", "vae_mode", "dtype"}
    assert old.as_dict()["resize"] == "square"
    assert ExtractionSettings(resize="aspect").key_dict()["resize"] == "aspect"


def test_aspect_extraction_records_its_policy(tiny_pipeline_dirs, image_folder, tmp_path, cli):
    from diffact import workflow as wf
    from diffact.extract.store import FeatureStore

    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    square_dir = wf.store_dir(config, "spair", "sd15-tiny", "screen")
    config["extraction"]["resize"] = "aspect"
    assert wf.store_dir(config, "spair", "sd15-tiny", "screen") != square_dir
    assert "--resize aspect" in wf.extract_args(config, "spair", "sd15-tiny", "screen")

    done = cli("extract", "--model", tiny_pipeline_dirs["sd15"], "--family", "sd15", "--layers",
               "up-level1-repeat1-vit-block0-cross-q", "--dataset-kind", "folder", "--dataset-root", image_folder,
               "--out", tmp_path / "s", "--image-size", "32", "--resize", "aspect")
    assert done.returncode == 0, done.stderr
    store = FeatureStore.open(tmp_path / "s")
    assert store.resize == ResizePolicy("aspect", 32)
    assert store.meta["recipe"]["resize"] == "aspect" and store.meta["recipe"]["grid_timestep"] == 51
    assert store.shape("up-level1-repeat1-vit-block0-cross-q") == (64, 4, 4)  # latent grid stays S/8 (16 → 4)
    # the model saw the padded canvas: the folder's 160×128 images fill 32×26 of the 32² input
    tensor, size = load_image_tensor(sorted(Path(image_folder).glob("*.jpg"))[0], 32, "aspect")
    assert size == (160, 128) and torch.count_nonzero(tensor[:, :3]) == 0 and torch.count_nonzero(tensor[:, 29:]) == 0


def test_square_is_the_paper_stretch(tmp_path):
    from PIL import Image

    image = (np.arange(30 * 50 * 3) % 251).astype(np.uint8).reshape(30, 50, 3)
    save_jpeg(image, tmp_path / "a.jpg")
    tensor, size = load_image_tensor(tmp_path / "a.jpg", 16)  # default policy
    with Image.open(tmp_path / "a.jpg") as img:  # docs/paper.md §2.1 step 3: PIL resize((S, S)) → [-1, 1]
        expected = np.asarray(img.convert("RGB").resize((16, 16), Image.Resampling.BICUBIC), np.float32) / 255 * 2 - 1
    assert size == (50, 30)
    torch.testing.assert_close(tensor, torch.from_numpy(expected).permute(2, 0, 1))
