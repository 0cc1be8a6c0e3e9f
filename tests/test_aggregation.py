"""The trained aggregation of paper §2.8: inputs, loss, schedule, checkpoints, and that training helps."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from diffact.data.spair import SPairPair
from diffact.tasks.correspondence.aggregation import (
    LOGIT_SCALE,
    AggregationNetwork,
    AggregationTrainSettings,
    aggregation_out_channels,
    clip_loss,
    evaluate,
    evaluation_steps,
    keypoint_grid_indices,
    load_checkpoint,
    resize_and_concat,
    save_checkpoint,
    train_aggregation,
    training_pair_order,
    training_targets,
)
from diffact.utils.errors import ConfigError, DataError


def test_resize_and_concat_resizes_each_map_bilinearly_and_keeps_order():
    a, b = torch.randn(2, 4, 4), torch.randn(3, 8, 8)
    out = resize_and_concat([a, b], 8)
    assert out.shape == (5, 8, 8)
    expected_a = F.interpolate(a[None], (8, 8), mode="bilinear", align_corners=False)[0]
    assert torch.allclose(out[:2], expected_a)
    assert torch.equal(out[2:], b)  # already at the grid size: untouched
    with pytest.raises(DataError):
        resize_and_concat([], 8)


def test_conv_width_and_fixed_logit_scale():
    assert aggregation_out_channels(3840, 1) == 3840  # one model: C → C
    assert aggregation_out_channels(8154, 3) == 4077  # Ours-XL-t: C → C // 2
    net = AggregationNetwork(6, 3)
    assert net.conv.weight.shape == (3, 6, 3, 3) and net.conv.bias is None
    assert [n for n, _ in net.named_parameters()] == ["conv.weight"]  # logit_scale is not trained
    assert float(net.logit_scale) == pytest.approx(math.log(1 / 0.07))
    assert net(torch.randn(6, 5, 5)).shape == (3, 5, 5)  # padding 1 keeps the grid


def test_keypoints_go_to_the_grid_as_dhf_rescale_and_round():
    # A 100×50 image on a 10×10 grid: x scales by 0.1, y by 0.2; rounding is half-to-even; clipped to [0, 9].
    kps = np.array([[55.0, 25.0], [45.0, 0.0], [100.0, 50.0], [0.0, 12.4]])
    # (5.5 → 6, 5) → 56; (4.5 → 4, 0) → 4; (10 → 9, 10 → 9) → 99; (0, 2.48 → 2) → 20
    assert keypoint_grid_indices(kps, (100, 50), 10).tolist() == [56, 4, 99, 20]


def test_training_targets_drop_keypoints_missing_on_either_side():
    pair = make_pair("p", np.array([[1.0, 1.0], [np.nan, np.nan], [3.0, 2.0]]), np.array([[2.0, 1.0], [4.0, 4.0], [-1.0, -1.0]]))
    src, trg = training_targets(pair, 8)
    assert src.tolist() == [1 * 8 + 1] and trg.tolist() == [1 * 8 + 2]


def test_clip_loss_equals_the_full_similarity_matrix_formula():
    torch.manual_seed(0)
    src, trg = torch.randn(5, 4, 4), torch.randn(5, 4, 4)
    src_idx, trg_idx = torch.tensor([0, 5, 15]), torch.tensor([3, 5, 9])
    # Upstream compute_clip_loss: full 16×16 cosine matrices, indexed by keypoint rows.
    s = F.normalize(src.reshape(5, -1).T, dim=1)
    t = F.normalize(trg.reshape(5, -1).T, dim=1)
    scale = math.exp(LOGIT_SCALE)
    expected = (F.cross_entropy(scale * (s @ t.T)[src_idx], trg_idx) + F.cross_entropy(scale * (t @ s.T)[trg_idx], src_idx)) / 2
    assert float(clip_loss(src, trg, src_idx, trg_idx)) == pytest.approx(float(expected), rel=1e-5)


def test_clip_loss_hand_value_when_two_positions_match_equally():
    # 2×2 grid, codes e1, e1, e2, e2: keypoint 0's row has cosines [1, 1, 0, 0], scaled by 1/0.07,
    # so CE = −log(e^s / (2e^s + 2)) = log(2 + 2e^(−s)) with s = 1/0.07, in both directions.
    codes = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]).reshape(2, 2, 2)
    idx = torch.tensor([0])
    expected = math.log(2 + 2 * math.exp(-1 / 0.07))
    assert float(clip_loss(codes, codes, idx, idx)) == pytest.approx(expected, rel=1e-5)


def test_pair_order_is_seeded_and_repeats_a_small_training_set():
    settings = AggregationTrainSettings(epochs=2, pairs_per_epoch=7, eval_every=5, seed=3)
    order = training_pair_order(3, settings)
    assert len(order) == settings.steps == 14
    assert np.array_equal(order, training_pair_order(3, settings))  # seeded
    assert not np.array_equal(order, training_pair_order(3, AggregationTrainSettings(epochs=2, pairs_per_epoch=7, eval_every=5, seed=4)))
    first_epoch = order[:7]
    assert sorted(first_epoch[:3]) == [0, 1, 2] and sorted(first_epoch[3:6]) == [0, 1, 2]  # whole permutations


def test_evaluation_steps_follow_upstream():
    steps = evaluation_steps(2 * 5000, 500)  # paper: step > 0 and step % 500 == 0
    assert len(steps) == 19 and steps[0] == 500 and steps[-1] == 9500
    with pytest.raises(ConfigError):
        AggregationTrainSettings(eval_every=0)


def test_checkpoint_round_trip_and_bad_file(tmp_path):
    net = AggregationNetwork(4, 2)
    path = save_checkpoint(tmp_path / "ckpt" / "step_000010.safetensors", net, {"step": 10, "layers": [["a", "b"]]})
    loaded, meta = load_checkpoint(path)
    assert torch.equal(loaded.conv.weight, net.conv.weight) and meta["step"] == 10 and meta["layers"] == [["a", "b"]]
    assert not list(path.parent.glob(".*part*"))  # atomic: no temporary file left
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="bad.safetensors"):
        load_checkpoint(bad)


# ------------------------------------------------------------------------------------------------
# Training helps: a constructed dataset where hard NN fails and a 3×3 conv can fix it.
# ------------------------------------------------------------------------------------------------

GRID = 8  # images are 8×8 pixels and the feature grid is 8×8, so keypoints map 1:1 and PCK@0.1 needs exact hits


def make_pair(name, src_kps, trg_kps) -> SPairPair:
    box = np.array([0.0, 0.0, GRID, GRID])
    return SPairPair(name=name, category="toy", src_path=Path(f"{name}-s.jpg"), trg_path=Path(f"{name}-t.jpg"),
                     src_kps=np.asarray(src_kps, float), trg_kps=np.asarray(trg_kps, float),
                     src_bbox=box, trg_bbox=box, src_size=(GRID, GRID), trg_size=(GRID, GRID))


def constructed_dataset(n_pairs=4, n_keypoints=6, semantic=6, nuisance=6, nuisance_scale=4.0, seed=0):
    """Target = source shifted by a per-pair offset. `semantic` channels carry a per-pixel code that moves
    with the content; `nuisance` channels are large independent noise in each image, so cosine NN on the
    raw maps is dominated by noise while the conv can learn to drop them."""
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    pairs, feats = [], {}
    for p in range(n_pairs):
        dx, dy = int(rng.integers(-2, 3)), int(rng.integers(-2, 3))
        code = torch.randn(semantic, GRID + 4, GRID + 4, generator=g)  # content on a larger canvas
        src_sem = code[:, 2:2 + GRID, 2:2 + GRID]
        trg_sem = code[:, 2 - dy:2 - dy + GRID, 2 - dx:2 - dx + GRID]  # trg(x, y) = src(x − dx, y − dy)
        src = torch.cat([src_sem, nuisance_scale * torch.randn(nuisance, GRID, GRID, generator=g)])
        trg = torch.cat([trg_sem, nuisance_scale * torch.randn(nuisance, GRID, GRID, generator=g)])
        xs = rng.integers(max(0, -dx), min(GRID, GRID - dx), size=n_keypoints)
        ys = rng.integers(max(0, -dy), min(GRID, GRID - dy), size=n_keypoints)
        src_kps = np.stack([xs, ys], axis=1).astype(float)
        pair = make_pair(f"pair{p}", src_kps, src_kps + [dx, dy])
        pairs.append(pair)
        feats[pair.name] = (src, trg)
    return pairs, lambda pair: feats[pair.name]


def test_trained_aggregation_beats_nearest_neighbour_on_training_pairs():
    pairs, features_of = constructed_dataset()
    nn_score = evaluate(pairs, features_of, None, eval_size=GRID)
    # A larger lr than the paper's 5e-4 keeps the test to 40 steps.
    settings = AggregationTrainSettings(epochs=2, pairs_per_epoch=20, eval_every=10, lr=0.02, weight_decay=0.01,
                                        seed=0, feature_size=GRID, eval_size=GRID)
    network, evaluations, train_log = train_aggregation(pairs, features_of, pairs, features_of, 12, settings)
    trained_score = evaluate(pairs, features_of, network, eval_size=GRID)
    assert nn_score["pck_img@0.10"] < 50.0  # the nuisance channels break raw NN
    assert trained_score["pck_img@0.10"] >= nn_score["pck_img@0.10"] + 30.0
    assert list(evaluations["step"]) == [10, 20, 30]  # step > 0, every 10, of 40 steps
    assert len(train_log) == 40
    first, last = train_log["loss"].iloc[:5].mean(), train_log["loss"].iloc[-5:].mean()
    assert last < first
    assert nn_score["keypoints_per_s"] > 0 and nn_score["n_keypoints"] == 24


def test_evaluation_convolves_an_image_shared_by_pairs_once():
    pairs, features_of = constructed_dataset(n_pairs=4)
    shared = features_of(pairs[0])[0]  # every pair's source is the first pair's source image (one tensor object)

    def shared_source(pair):
        return shared, features_of(pair)[1]

    def copied_source(pair):  # the same values, a new tensor at every visit: nothing to reuse
        return shared.clone(), features_of(pair)[1]

    network = AggregationNetwork(12, 12)
    calls = []
    network.conv.register_forward_hook(lambda *_: calls.append(1))
    once = evaluate(pairs, shared_source, network, eval_size=GRID)
    assert len(calls) == 1 + len(pairs)
    calls.clear()
    every = evaluate(pairs, copied_source, network, eval_size=GRID)
    assert len(calls) == 2 * len(pairs)
    timing = {"seconds", "keypoints_per_s"}
    assert {k: v for k, v in once.items() if k not in timing} == {k: v for k, v in every.items() if k not in timing}


def test_kept_conv_outputs_go_with_their_inputs():
    import gc

    from diffact.tasks.correspondence.aggregation import ConvOutputs

    convolved = ConvOutputs(AggregationNetwork(2, 2))
    kept = torch.randn(2, 4, 4)
    with torch.no_grad():
        first = convolved(kept)
        assert convolved(kept) is first and convolved.calls == 1
        dropped, later = torch.randn(2, 4, 4), torch.randn(2, 4, 4)  # both alive: different ids
        convolved(dropped)
        del dropped
        gc.collect()
        convolved(later)  # an insertion forgets the output of the dropped input
    assert len(convolved._entries) == 2 and convolved.calls == 3


def test_store_features_concatenate_models_and_bound_the_cache(tmp_path):
    from diffact.extract.store import FeatureStore
    from diffact.tasks.correspondence.aggregation import StorePairFeatures

    stores = []
    for m, channels in enumerate((2, 3)):
        store = FeatureStore.create(tmp_path / f"m{m}", {"model": m}, layers={"a": (channels, 4, 4)})
        for stem in ("x", "y", "z"):
            store.write(f"toy/{stem}", {"a": torch.full((channels, 4, 4), float(m))})
        stores.append(store)
    features = StorePairFeatures(stores, 8, cache_bytes=2 * 5 * 8 * 8 * 4)  # room for two images
    out = features.image("toy", Path("x.jpg"))
    assert out.shape == (5, 8, 8) and float(out[:2].max()) == 0.0 and float(out[2:].min()) == 1.0
    assert features.channels == 5 and features.n_models == 2
    features.image("toy", Path("y.jpg"))
    assert features.image("toy", Path("x.jpg")) is out  # cached
    features.image("toy", Path("z.jpg"))  # evicts y, the least recently used
    assert list(features._cache) == ["toy/x", "toy/z"]


class _FakeDraw:
    """A StorePairFeatures stand-in: every image of draw k is a constant map of value k."""

    def __init__(self, k, layers=(("a",),), channels=2):
        self.k, self.layers, self.channels, self.n_models, self.resize = k, [list(x) for x in layers], channels, 1, None
        self.stores = [SimpleNamespace(root=f"store-draw{k}")]  # error messages name the stores

    def image(self, category, path):
        return torch.full((self.channels, 4, 4), float(self.k))


def test_noise_draws_are_chosen_per_image_from_a_seeded_stream():
    from diffact.tasks.correspondence.aggregation import NoiseDrawFeatures

    pair = SimpleNamespace(category="cat", src_path="a.jpg", trg_path="b.jpg")

    def chosen(seed, stream, visits=40):
        features = NoiseDrawFeatures([_FakeDraw(k) for k in range(3)], seed, stream)
        return [int(t[0, 0, 0]) for _ in range(visits) for t in features(pair)], features.visits

    draws, visits = chosen(0, "trn")
    assert set(draws) == {0, 1, 2} and sum(visits) == 80 and visits == [draws.count(k) for k in range(3)]
    assert chosen(0, "trn")[0] == draws  # same seed and stream: same draws
    assert chosen(0, "val")[0] != draws and chosen(1, "trn")[0] != draws
    with pytest.raises(DataError, match="different layers"):
        NoiseDrawFeatures([_FakeDraw(0), _FakeDraw(1, layers=(("b",),))], 0, "trn")


def test_keep_best_leaves_only_the_checkpoint_heldout_selects(tmp_path):
    """corr-train --keep-best (issue #19: 19 → 1 checkpoint per paper run): what stays on disk is exactly the file
    the heldout protocol's select_checkpoint names, and every evaluation row still names its own checkpoint."""
    from diffact.tasks.correspondence.protocol import select_checkpoint

    pairs, features_of = constructed_dataset()
    settings = AggregationTrainSettings(epochs=2, pairs_per_epoch=20, eval_every=5, lr=0.02, weight_decay=0.01,
                                        seed=0, feature_size=GRID, eval_size=GRID)
    _, all_kept, _ = train_aggregation(pairs, features_of, pairs, features_of, 12, settings,
                                       checkpoint_dir=tmp_path / "all")
    _, evaluations, _ = train_aggregation(pairs, features_of, pairs, features_of, 12, settings,
                                          checkpoint_dir=tmp_path / "best", keep_best="pck_img@0.10")
    assert len(list((tmp_path / "all").iterdir())) == len(evaluations) == 7
    assert list(evaluations["checkpoint"]) == list(all_kept["checkpoint"])
    selected = select_checkpoint(evaluations, "pck_img@0.10")["checkpoint"]
    assert [p.name for p in (tmp_path / "best").iterdir()] == [selected]
    assert (tmp_path / "best" / selected).read_bytes() == (tmp_path / "all" / selected).read_bytes()


def test_best_checkpoint_keeps_the_earliest_of_equal_values_and_never_nan(tmp_path):
    from diffact.tasks.correspondence.aggregation import BestCheckpoint

    best = BestCheckpoint("pck")
    for step, value in enumerate([float("nan"), 50.0, 60.0, 60.0, 55.0, float("nan")]):
        path = tmp_path / f"step{step}"
        path.write_text("x")
        best.offer(path, {"pck": value})
    assert [p.name for p in tmp_path.iterdir()] == ["step2"]
    with pytest.raises(ConfigError, match="not a validation column"):
        BestCheckpoint("nope").offer(tmp_path / "step2", {"pck": 1.0})
