"""The three property numbers on constructed features with known answers (diffact.analysis.properties)."""

import numpy as np
import pytest
import torch

from diffact.analysis.properties import (
    DrawMoments, NoiseShareAccumulator, granularity, locality, map_properties, noise_share_of_draws,
    resize_labels, same_label_pairs,
)
from diffact.utils.seeding import numpy_rng, torch_generator


def _gen(*keys):
    return torch_generator(0, "test_properties", *keys)


# ---- P1: noise share -------------------------------------------------------------------------------------------

def test_pure_noise_features_have_noise_share_near_one():
    draws = torch.randn(8, 16, 12, 12, generator=_gen("noise"))
    assert noise_share_of_draws(draws) == pytest.approx(1.0, abs=0.05)


def test_features_that_ignore_the_draw_have_noise_share_zero():
    signal = torch.randn(16, 12, 12, generator=_gen("signal"))
    assert noise_share_of_draws(signal.expand(5, -1, -1, -1)) == 0.0


def test_equal_signal_and_noise_variance_gives_half():
    signal = torch.randn(64, 16, 16, generator=_gen("half-signal"))
    draws = signal + torch.randn(6, 64, 16, 16, generator=_gen("half-noise"))
    assert noise_share_of_draws(draws) == pytest.approx(0.5, abs=0.04)


def test_streaming_moments_match_the_direct_computation():
    draws = torch.randn(4, 2, 3, 8, 8, generator=_gen("stream")) + torch.linspace(0, 1, 8)
    moments = DrawMoments()
    for k in range(4):
        moments.add({"a": draws[k]})
    acc = NoiseShareAccumulator()
    acc.add(moments)
    assert acc.shares()["a"] == pytest.approx(noise_share_of_draws(draws), rel=1e-9)
    assert acc.rows()[0]["n_images"] == 2 and acc.rows()[0]["draws"] == 4


def test_one_draw_is_refused():
    with pytest.raises(ValueError):
        noise_share_of_draws(torch.zeros(1, 2, 4, 4))


# ---- P2: granularity -------------------------------------------------------------------------------------------

def test_checkerboard_is_finer_than_a_ramp_and_a_constant_is_zero():
    n = 16
    rows, cols = np.indices((n, n))
    checker = torch.tensor((-1.0) ** (rows + cols))[None]
    ramp = torch.tensor(cols / n, dtype=torch.float64)[None]
    assert granularity(checker) > 0.9
    assert granularity(ramp) < 0.1
    assert granularity(torch.ones(3, n, n)) == 0.0


def test_granularity_is_comparable_across_map_sizes():
    # The same pattern (stripes of period 4 px) at two map sizes has the same normalised granularity.
    def stripes(n):
        return torch.tensor(np.cos(2 * np.pi * np.arange(n) / 4))[None, None, :].expand(1, n, n).clone()

    assert granularity(stripes(16)) == pytest.approx(granularity(stripes(32)), abs=0.03)


# ---- P3: locality ----------------------------------------------------------------------------------------------

def _blob_labels(n=24):
    rows, cols = np.indices((n, n))
    labels = np.zeros((n, n), dtype=np.uint8)
    labels[(rows - n / 2) ** 2 + (cols - n / 2) ** 2 < (n / 3) ** 2] = 1
    labels[:, : n // 6] = 2
    labels[0, 0] = 255  # ignored pixels never enter a pair
    return labels


def _pairs(labels, n=1500):
    return same_label_pairs(labels, n, numpy_rng(0, "test_pairs"))


def test_position_only_features_have_high_locality():
    labels = _blob_labels()
    n = labels.shape[0]
    rows, cols = np.indices((n, n))
    centres = [(y, x) for y in np.linspace(0, n, 5) for x in np.linspace(0, n, 5)]
    bumps = np.stack([np.exp(-((rows - y) ** 2 + (cols - x) ** 2) / (2 * 5.0 ** 2)) for y, x in centres])
    result = locality(torch.tensor(bumps), labels, _pairs(labels))
    assert result["locality"] > 0.6 and result["locality_slope"] > 0


def test_label_only_features_have_low_locality():
    labels = _blob_labels()
    onehot = np.stack([(labels == k).astype(float) for k in range(3)])
    onehot += 1e-3 * numpy_rng(0, "label-noise").standard_normal(onehot.shape)
    result = locality(torch.tensor(onehot), labels, _pairs(labels))
    assert abs(result["locality"]) < 0.1


def test_same_label_pairs_are_distinct_same_label_and_seeded():
    labels = _blob_labels()
    a, b = _pairs(labels, 500)
    flat = labels.reshape(-1)
    assert (a != b).all() and (flat[a] == flat[b]).all() and (flat[a] != 255).all()
    a2, b2 = _pairs(labels, 500)
    assert (a == a2).all() and (b == b2).all()


def test_resize_labels_nearest():
    labels = np.array([[0, 1], [2, 3]], dtype=np.uint8)
    assert resize_labels(labels, 4, 4).tolist()[0] == [0, 0, 1, 1]
    assert resize_labels(np.kron(labels, np.ones((4, 4), dtype=np.uint8)), 2, 2).tolist() == labels.tolist()


def test_map_properties_table_over_images():
    labels = _blob_labels()
    feats = {"smooth": torch.tensor(np.indices(labels.shape).astype(float)),
             "checker": torch.tensor((-1.0) ** np.indices(labels.shape).sum(0))[None].repeat(2, 1, 1)}
    rows = map_properties(lambda i, name: feats[name], ["img_a", "img_b"], ["smooth", "checker"],
                          labels_of=lambda i: labels, n_pairs=300, seed=0)
    by_layer = {r["layer"]: r for r in rows}
    assert by_layer["checker"]["granularity"] > by_layer["smooth"]["granularity"]
    assert by_layer["smooth"]["n_images"] == 2 and by_layer["smooth"]["locality_pairs"] == 600
    assert [r["forward_index"] for r in rows] == [0, 1]


def test_a_feature_equal_to_the_image_has_zero_locality_excess():
    labels = _blob_labels(16)
    image = torch.tensor(numpy_rng(0, "image").standard_normal((3, 16, 16))).cumsum(dim=2)  # smooth along rows
    rows = map_properties(lambda i, name: image.clone(), ["img"], ["copy"], labels_of=lambda i: labels,
                          image_of=lambda i: image, n_pairs=400)
    assert rows[0]["locality_excess"] == pytest.approx(0.0, abs=1e-9)
    assert rows[0]["locality_pixels"] == pytest.approx(rows[0]["locality"])


# ---- the Fig 15 control, the merged table, figure availability -------------------------------------------------

def test_control_unet_trains_captures_and_round_trips(tmp_path):
    from diffact.models.control_unet import (ControlConfig, capture_activations, control_catalog, load_control,
                                             noised_images, save_control, train_control)

    config = ControlConfig(num_classes=3, channels=(4, 8), repeats=1, image_size=16, crop=8, steps=3, batch_size=2)
    images = torch.randn(4, 3, 16, 16, generator=_gen("control-images"))
    labels = (images[:, 0] > 0).long()
    model, curve = train_control(images, labels, config)
    assert len(curve) == 3
    feats = capture_activations(model, images[:1])
    assert list(feats) == [n for n, _ in control_catalog(model)]
    assert feats["down-level0-downsampler-out"].shape == (1, 4, 8, 8)
    again = capture_activations(load_control(save_control(model, tmp_path / "control")), images[:1])
    assert all(torch.equal(feats[n], again[n]) for n in feats)
    noisy = noised_images(images[:1], ["a"], t=50, seed=0, draw=0)
    assert torch.equal(noisy, noised_images(images[:1], ["a"], t=50, seed=0, draw=0))
    assert not torch.equal(noisy, noised_images(images[:1], ["a"], t=50, seed=0, draw=1))


def test_sd_schedule_alpha_bar_at_t50():
    from diffact.models.control_unet import scaled_linear_alpha_bar

    # SD's scaled_linear betas (0.00085 → 0.012): ᾱ_50 ≈ 0.952, i.e. little noise at the paper's t = 50.
    assert scaled_linear_alpha_bar(50) == pytest.approx(0.9516, abs=1e-3)
    assert scaled_linear_alpha_bar(0) == pytest.approx(1 - 0.00085)


def test_merged_table_adds_name_parts_pck_and_filter_verdict():
    import pandas as pd

    from diffact.analysis.property_runs import merge_property_tables

    names = ["down-level0-repeat0-res-out", "up-level1-repeat0-res-out", "up-level1-repeat0-vit-block0-self-k"]
    maps = pd.DataFrame({"forward_index": [0, 1, 2], "layer": names, "granularity": [0.5, 0.2, 0.3],
                         "locality": [0.1, 0.2, 0.6]})
    noise = pd.DataFrame({"forward_index": [0, 1, 2], "layer": names, "noise_share": [0.8, 0.1, 0.2]})
    pck = pd.DataFrame({"layer": names, "pck_img@0.10": [0.1, 0.4, 0.3]})
    table = merge_property_tables({"s": noise}, {"s": maps}, pck, "sd15", "m")
    assert table["kind"].tolist() == ["res-out", "res-out", "self-k"]
    assert table["nn_pck"].tolist() == [0.1, 0.4, 0.3]
    assert table["filter_kept"].tolist() == [False, True, False]


def test_figure_availability_lists_missing_weights():
    from diffact.analysis.availability import ModelInfo, figure_status

    rows = {r["figure"]: r for r in figure_status(
        [ModelInfo("sd15-tiny", "sd15", "results/models/sd15-tiny", True)], ["seg-simple"], control=True)}
    assert rows["Fig 12"]["status"] == "unavailable" and "Playground" in rows["Fig 12"]["reason"]
    assert rows["Fig 14"]["status"] == "unavailable"
    assert rows["Fig 13"]["status"] == "analogue" and rows["Fig 15"]["status"] == "analogue"
    assert rows["Fig 3"]["status"] == "analogue" and rows["Fig 3"]["models"] == "sd15-tiny"
    no_scene = figure_status([ModelInfo("sd15-tiny", "sd15", "x", True)], [], control=True)
    assert {r["status"] for r in no_scene} == {"unavailable"}
