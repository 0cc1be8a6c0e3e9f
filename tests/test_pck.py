"""PCK and nearest-neighbour keypoint transfer (paper §2.8) on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from diffact.tasks.correspondence.matching import (
    bilinear_matrix,
    eval_pixels_to_image,
    keypoints_to_eval_pixels,
    nn_transfer,
    sample_descriptors,
)
from diffact.tasks.correspondence.pck import (
    PCKAccumulator,
    bbox_threshold,
    img_threshold,
    pck,
    pck_hits,
)
from diffact.utils.errors import ConfigError, DataError

NAN = math.nan

# Hand case used by several tests. Target image 100×50 (W×H), target box [0, 0, 40, 60] → box side 60.
# Distances of the three annotated keypoints: 3, 8, 15; rows 4 and 5 are missing (NaN / negative).
GT = np.array([[10, 10], [20, 20], [30, 30], [NAN, NAN], [-1, -1]], dtype=float)
PRED = np.array([[10, 13], [20, 28], [45, 30], [0, 0], [5, 5]], dtype=float)
TRG_SIZE = (100, 50)
TRG_BOX = (0, 0, 40, 60)


def one_hot_features(h: int, w: int) -> torch.Tensor:
    """(h·w)×h×w features where pixel (r, c) has the one-hot code r·w + c: a perfect descriptor."""
    return torch.eye(h * w).reshape(h * w, h, w)


def test_thresholds_follow_the_paper_definitions():
    assert img_threshold(0.1, (100, 50)) == pytest.approx(10.0)  # α·max(W, H)
    assert img_threshold(0.1, (100, 50, 3)) == pytest.approx(10.0)  # SPair's [W, H, C] accepted
    assert bbox_threshold(0.1, TRG_BOX) == pytest.approx(6.0)  # α·max(box w, box h) = 0.1·60


@pytest.mark.parametrize(
    "alpha, img_expected, bbox_expected",
    [
        # img thresholds 5 / 10 / 15 px; bbox thresholds 3 / 6 / 9 px; distances 3, 8, 15 (inclusive test).
        (0.05, [True, False, False], [True, False, False]),
        (0.10, [True, True, False], [True, False, False]),
        (0.15, [True, True, True], [True, True, False]),
    ],
)
def test_pck_hits_hand_case(alpha, img_expected, bbox_expected):
    img_hits = pck_hits(PRED, GT, img_threshold(alpha, TRG_SIZE))
    bbox_hits = pck_hits(PRED, GT, bbox_threshold(alpha, TRG_BOX))
    # Missing ground truth (rows 3, 4) is never a hit, even when the prediction is close.
    assert img_hits.tolist() == img_expected + [False, False]
    assert bbox_hits.tolist() == bbox_expected + [False, False]
    assert pck(PRED, GT, img_threshold(alpha, TRG_SIZE)) == pytest.approx(100.0 * sum(img_expected) / 3)
    assert pck(PRED, GT, bbox_threshold(alpha, TRG_BOX)) == pytest.approx(100.0 * sum(bbox_expected) / 3)


def test_pck_perfect_and_nan_predictions():
    gt = np.array([[1.0, 2.0], [3.0, 4.0]])
    assert pck(gt, gt, 0.0) == 100.0
    assert pck(np.array([[1.0, 2.0], [NAN, NAN]]), gt, 10.0) == 50.0  # a NaN prediction is a miss
    assert math.isnan(pck(gt, np.full((2, 2), NAN), 10.0))  # nothing annotated
    with pytest.raises(DataError, match="differ in shape"):
        pck_hits(gt[:1], gt, 1.0)


def test_accumulator_pools_over_keypoints_and_splits_by_category():
    acc = PCKAccumulator()
    acc.add_pair("cow", PRED, GT, TRG_SIZE, TRG_BOX, name="p1")
    # dog: target 200×100 → img threshold 20 at α=0.1; box [0, 0, 50, 20] → 5. Distances 1 and 30.
    acc.add_pair("dog", np.array([[1.0, 0.0], [10.0, 30.0]]), np.array([[0.0, 0.0], [10.0, 0.0]]), (200, 100), (0, 0, 50, 20), name="p2")

    assert acc.n_pairs == 2 and acc.n_keypoints == 5
    # img@0.10: cow 2/3, dog 1/2 → pooled 3/5 = 60 %, category mean (66.67 + 50) / 2.
    assert acc.pooled("img", 0.10) == pytest.approx(60.0)
    assert acc.per_category("img", 0.10) == pytest.approx({"cow": 200 / 3, "dog": 50.0})
    assert acc.category_mean("img", 0.10) == pytest.approx((200 / 3 + 50) / 2)
    # bbox@0.10: cow 1/3 (threshold 6), dog 1/2 (threshold 5) → 2/5.
    assert acc.pooled("bbox", 0.1) == pytest.approx(40.0)
    # α = 0.15: img thresholds 15 (cow: 3/3) and 30 (dog: distance 30 is inclusive → 2/2).
    assert acc.pooled("img", 0.15) == pytest.approx(100.0)

    table = acc.table()
    assert list(table.columns) == ["category", "kind", "alpha", "n_correct", "n_keypoints", "pck", "n_pairs",
                                   "pck_per_image"]
    assert len(table) == 3 * 2 * 3  # (all, cow, dog) × (img, bbox) × 3 alphas
    row = table[(table.category == "all") & (table.kind == "img") & (table.alpha == 0.1)].iloc[0]
    assert (row.n_correct, row.n_keypoints) == (3, 5)
    summary = acc.summary()
    assert summary["pck_img@0.10"] == pytest.approx(60.0) and summary["n_keypoints"] == 5
    pairs = acc.pairs_table()
    assert pairs["n_keypoints"].tolist() == [3, 2] and pairs["correct_img@0.10"].tolist() == [2, 1]


def test_per_image_pck_is_the_mean_of_each_pairs_pck_beside_the_pooled_one():
    """Hand case where the conventions differ: pooled over keypoints (the paper's, DHF's compute_pck) vs the
    mean over pairs of each pair's PCK (DIFT / GeoAware-SC), overall and per category."""
    acc = PCKAccumulator(alphas=(0.1,))
    # cow p1: the shared hand case, img@0.10 hits 2 of 3 annotated keypoints (rows 4, 5 missing) → 66.67 %
    acc.add_pair("cow", PRED, GT, TRG_SIZE, TRG_BOX, name="p1")
    # cow p2: one keypoint, 30 px off with an img threshold of 10 px → 0 %
    acc.add_pair("cow", np.array([[40.0, 10.0]]), np.array([[10.0, 10.0]]), TRG_SIZE, TRG_BOX, name="p2")
    # dog p3: 2 keypoints at distances 1 and 30 with an img threshold of 20 px → 50 %
    acc.add_pair("dog", np.array([[1.0, 0.0], [10.0, 30.0]]), np.array([[0.0, 0.0], [10.0, 0.0]]), (200, 100),
                 (0, 0, 50, 20), name="p3")
    # a pair without an annotated keypoint counts in neither convention
    acc.add_pair("dog", np.array([[1.0, 1.0]]), np.array([[NAN, NAN]]), (200, 100), (0, 0, 50, 20), name="p4")

    # pooled: (2 + 0 + 1) / (3 + 1 + 2) = 50 %; per image: (200/3 + 0 + 50) / 3 = 38.89 %
    assert acc.pooled("img", 0.1) == pytest.approx(50.0)
    assert acc.per_image("img", 0.1) == pytest.approx((200 / 3 + 0 + 50) / 3)
    # per category: cow pooled 2/4 = 50 %, per image (66.67 + 0) / 2 = 33.33 %; dog 1/2 either way
    assert acc.per_category("img", 0.1) == pytest.approx({"cow": 50.0, "dog": 50.0})
    assert acc.per_category_per_image("img", 0.1) == pytest.approx({"cow": 100 / 3, "dog": 50.0})
    summary = acc.summary()
    assert summary["pck_img@0.10"] == pytest.approx(50.0)
    assert summary["pck_img@0.10_per_image"] == pytest.approx(350 / 9)
    keys = list(summary)
    assert keys.index("pck_img@0.10_per_image") == keys.index("pck_img@0.10") + 1  # beside its pooled column
    table = acc.table().set_index(["category", "kind"])
    assert table.loc[("cow", "img"), ["pck", "pck_per_image", "n_pairs"]].tolist() == pytest.approx([50.0, 100 / 3, 2])
    assert table.loc[("all", "img"), ["pck", "pck_per_image", "n_pairs"]].tolist() == pytest.approx([50.0, 350 / 9, 3])
    # bbox@0.10: cow p1 1/3 (threshold 6), p2 0/1; dog p3 1/2 (threshold 5) → pooled 2/6, per image (33.3 + 0 + 50) / 3
    assert acc.pooled("bbox", 0.1) == pytest.approx(100 / 3)
    assert acc.per_image("bbox", 0.1) == pytest.approx((100 / 3 + 50) / 3)


def test_every_pck_table_carries_the_per_image_columns():
    """Screening rows (nn screens, the pixel reference) and Table 1 put each per-image column beside its pooled
    one (Table 1's evaluate() reports PCKAccumulator.summary(); the CLI tests check the written files)."""
    from diffact.tasks.correspondence.aggregation import pck_columns
    from diffact.tasks.correspondence.screen import _summary_row
    from diffact.tasks.correspondence.table1 import build_table1

    assert pck_columns((0.1,)) == ["pck_img@0.10", "pck_img@0.10_per_image", "pck_bbox@0.10", "pck_bbox@0.10_per_image"]
    acc = PCKAccumulator(alphas=(0.1,))
    acc.add_pair("cow", PRED, GT, TRG_SIZE, TRG_BOX)
    acc.add_pair("cow", np.array([[40.0, 10.0]]), np.array([[10.0, 10.0]]), TRG_SIZE, TRG_BOX)
    row = _summary_row(acc, seconds=1.0)  # a screening row (nn screens and the pixel reference)
    assert row["pck_img@0.10"] == pytest.approx(50.0) and row["pck_img@0.10_per_image"] == pytest.approx(100 / 3)
    import pandas as pd

    table = build_table1([pd.DataFrame([{"entry": "e", "layer_set": "legacy", "families": "sd15", "method": "nn",
                                         "protocol": "paper", **acc.summary()}])])
    columns = list(table.columns)
    assert columns.index("pck_img@0.10_per_image") == columns.index("pck_img@0.10") + 1


def test_accumulator_excludes_missing_source_keypoints_and_checks_inputs():
    acc = PCKAccumulator(alphas=(0.1,))
    gt = np.array([[0.0, 0.0], [10.0, 10.0]])
    src = np.array([[5.0, 5.0], [NAN, NAN]])  # second keypoint not annotated in the source
    acc.add_pair("cat", np.array([[0.0, 0.0], [NAN, NAN]]), gt, (100, 100), (0, 0, 100, 100), src_kps=src)
    assert acc.n_keypoints == 1 and acc.pooled("img", 0.1) == 100.0
    with pytest.raises(ConfigError, match="not accumulated"):
        acc.pooled("img", 0.05)
    with pytest.raises(ConfigError, match="kind"):
        acc.pooled("pixel", 0.1)
    with pytest.raises(DataError, match="lack"):
        acc.add_hits("cat", {("img", 0.1): np.array([True])})


def test_keypoint_grid_mapping_follows_dhf():
    # x·S/W then clip and round half to even: 10·8/40 = 2, 12.5·8/40 = 2.5 → 2, 39.9·8/40 → 7.98 → clip 7.
    pixels = keypoints_to_eval_pixels(np.array([[10, 5], [12.5, 5], [39.9, 19.9]]), (40, 20), 8)
    assert pixels.tolist() == [[2, 2], [2, 2], [7, 7]]
    assert eval_pixels_to_image(np.array([[2, 2]]), (16, 32), 8).tolist() == [[4.0, 8.0]]


def test_nn_transfer_with_one_hot_features_recovers_keypoints_exactly():
    feats = one_hot_features(16, 16)
    kps = np.array([[0, 0], [6, 10], [14, 2], [30, 30]], dtype=float)  # even → exact on a 32→16 grid
    pred = nn_transfer(feats, feats, kps, (32, 32), (32, 32), eval_size=16)
    np.testing.assert_array_equal(pred, kps)

    acc = PCKAccumulator()
    acc.add_pair("demo", pred, kps, (32, 32), (0, 0, 32, 32))
    assert all(acc.pooled(kind, a) == 100.0 for kind in ("img", "bbox") for a in (0.05, 0.1, 0.15))


def test_nn_transfer_rescales_between_differently_sized_images():
    # Source 40×20 → eval 8×8: keypoint (10, 5) is eval pixel (2, 2). Target content is the source shifted
    # by (dx, dy) = (3, 1) eval pixels, so the match is eval (5, 3); target 16×32 → (5·16/8, 3·32/8).
    h = w = 8
    src = one_hot_features(h, w)
    trg = torch.zeros_like(src)
    trg[:, 1:, 3:] = src[:, :-1, :-3]
    kps = np.array([[10.0, 5.0], [NAN, NAN], [0.0, 0.0]])
    pred = nn_transfer(src, trg, kps, (40, 20), (16, 32), eval_size=8)
    np.testing.assert_array_equal(pred[0], [10.0, 12.0])
    assert np.isnan(pred[1]).all()  # missing source keypoint → no prediction
    np.testing.assert_array_equal(pred[2], [3 * 16 / 8, 1 * 32 / 8])  # (0, 0) → eval (3, 1)


def test_soft_argmax_averages_equally_good_matches_and_nn_takes_the_first():
    src = one_hot_features(8, 8)
    trg = torch.zeros_like(src)
    code = 2 * 8 + 2  # source eval pixel (col 2, row 2)
    trg[code, 1, 2] = 1.0  # (col 2, row 1)
    trg[code, 5, 2] = 1.0  # (col 2, row 5)
    kps = np.array([[2.0, 2.0]])
    hard = nn_transfer(src, trg, kps, (8, 8), (8, 8), eval_size=8)
    soft = nn_transfer(src, trg, kps, (8, 8), (8, 8), eval_size=8, method="soft-argmax", temperature=0.01)
    np.testing.assert_array_equal(hard, [[2.0, 1.0]])  # first maximum in row-major order
    np.testing.assert_allclose(soft, [[2.0, 3.0]], atol=1e-6)  # midway between the two
    with pytest.raises(ConfigError, match="matching method"):
        nn_transfer(src, trg, kps, (8, 8), (8, 8), eval_size=8, method="mutual")
    with pytest.raises(DataError, match="channels"):
        nn_transfer(src, trg[:3], kps, (8, 8), (8, 8), eval_size=8)


@pytest.mark.parametrize("in_size, out_size", [(5, 12), (7, 3), (4, 4), (1, 5)])
def test_bilinear_matrix_matches_interpolate(in_size, out_size):
    x = torch.randn(1, 1, in_size, 1, generator=torch.Generator().manual_seed(0))
    expected = F.interpolate(x, size=(out_size, 1), mode="bilinear", align_corners=False)[0, 0, :, 0]
    np.testing.assert_allclose(bilinear_matrix(out_size, in_size) @ x[0, 0, :, 0], expected, atol=1e-6)


def _reference_similarities(src, trg, kps, src_size, s):
    """The paper's computation written plainly: upsample both maps fully, normalise, all similarities
    of the source keypoints against every target pixel: (N, S·S)."""
    up_s = F.normalize(F.interpolate(src[None], (s, s), mode="bilinear")[0].reshape(src.shape[0], -1), dim=0)
    up_t = F.normalize(F.interpolate(trg[None], (s, s), mode="bilinear")[0].reshape(trg.shape[0], -1), dim=0)
    pix = keypoints_to_eval_pixels(kps, src_size, s)
    return up_s[:, pix[:, 1] * s + pix[:, 0]].T @ up_t


@pytest.mark.parametrize("chunk_size, max_band_elements", [(256, 2**25), (1, 1), (3, 200)])
def test_banded_chunked_transfer_matches_full_computation(chunk_size, max_band_elements):
    g = torch.Generator().manual_seed(1)
    src, trg = torch.randn(6, 5, 7, generator=g), torch.randn(6, 4, 6, generator=g)
    kps = np.random.default_rng(0).uniform(0, 60, size=(9, 2))
    sims = _reference_similarities(src, trg, kps, (61, 70), 20)
    pred = nn_transfer(src, trg, kps, (61, 70), (50, 45), 20, chunk_size=chunk_size, max_band_elements=max_band_elements)
    # Upsampling by > 2 repeats the edge rows exactly, so ties exist; the prediction must reach the maximum.
    pix = np.round(pred * np.array([20 / 50, 20 / 45])).astype(int)
    np.testing.assert_allclose(pred, eval_pixels_to_image(pix, (50, 45), 20))
    reached = sims[np.arange(len(kps)), pix[:, 1] * 20 + pix[:, 0]]
    np.testing.assert_allclose(reached, sims.max(dim=1).values, atol=1e-5)
    # Source descriptors sampled at keypoints equal the fully upsampled map at those pixels.
    pix = keypoints_to_eval_pixels(kps, (61, 70), 20)
    full = F.interpolate(src[None], (20, 20), mode="bilinear")[0]
    np.testing.assert_allclose(sample_descriptors(src, pix, 20), full[:, pix[:, 1], pix[:, 0]].T, atol=1e-5)


@pytest.mark.parametrize("channels, h, w, s", [(6, 5, 7, 20), (4, 1, 4, 9), (3, 6, 1, 13), (5, 8, 8, 8)])
def test_similarity_bands_equal_the_upsampled_normalised_map(channels, h, w, s):
    """The NN search never builds the upsampled target (d·up(F) = up(d·F), norms from neighbouring columns):
    every band equals the plain computation — upsample with F.interpolate, L2-normalise, dot — up to rounding."""
    from diffact.tasks.correspondence.matching import similarity_bands

    g = torch.Generator().manual_seed(2)
    feat = torch.randn(channels, h, w, generator=g)
    descriptors = F.normalize(torch.randn(5, channels, generator=g), dim=1)
    full = F.normalize(F.interpolate(feat[None], (s, s), mode="bilinear", align_corners=False)[0], dim=0)
    expected = descriptors @ full.reshape(channels, -1)
    got = torch.full_like(expected, float("nan"))
    for first_row, first_kp, sims in similarity_bands(descriptors, feat, s, band_rows=3, chunk_size=2):
        got[first_kp:first_kp + sims.shape[0], first_row * s:first_row * s + sims.shape[1]] = sims
    torch.testing.assert_close(got, expected, atol=2e-6, rtol=0)
