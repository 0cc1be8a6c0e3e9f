"""The NN PCK screen streamed from the model (issue #19, point 2): ``diffact pck-screen`` given the arguments of
``diffact extract`` instead of ``--store`` writes the store-based screen's CSV byte for byte, with a feature cache
smaller than the pool too, and stores nothing."""

from __future__ import annotations

import re

import pytest
import torch

from conftest import STREAM_EXTRACTION as EXTRACTION

from diffact.extract.store import FeatureStore
from diffact.tasks.correspondence.stream import FurthestUseCache

SCREEN = ["--eval-size", 16, "--model-name", "sd15-tiny"]


@pytest.fixture(scope="module")
def store_screen(stream_spair, tiny_pipeline_dirs, tmp_path_factory):
    """The store path: extract the pool, then screen the store. Returns (model, store folder, CSV path)."""
    from diffact.cli import main

    tmp = tmp_path_factory.mktemp("store-screen")
    model, store, csv = tiny_pipeline_dirs["sd15"], tmp / "store", tmp / "nn_pck.csv"
    assert main([str(a) for a in ["extract", "--model", model, "--dataset-root", stream_spair, *EXTRACTION,
                                  "--out", store]]) == 0
    assert main([str(a) for a in ["pck-screen", "--store", store, "--dataset-root", stream_spair, "--split", "test",
                                  *SCREEN, "--out", csv]]) == 0
    return model, store, csv


def stream_args(model, stream_spair, out, *extra):
    return ["pck-screen", "--model", model, "--dataset-root", stream_spair, *EXTRACTION, *SCREEN, *extra, "--out", out]


def test_streamed_screen_is_byte_identical_to_the_store_screen(cli, stream_spair, store_screen, tmp_path):
    model, _, expected = store_screen
    out = tmp_path / "results" / "nn_pck.csv"
    done = cli(*stream_args(model, stream_spair, out))
    assert done.returncode == 0, done.stderr[-2000:]
    assert out.read_bytes() == expected.read_bytes()
    assert len(out.read_text().splitlines()) > 2  # a header and several activations
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["nn_pck.csv"]  # no store written


def test_streamed_features_are_the_stores_bit_for_bit(cli, stream_spair, store_screen, tmp_path, monkeypatch):
    """The CSV can hide a difference (a float16 rounding seldom moves a nearest neighbour): every map the stream
    scores must equal the store's, read back as the store screen reads it."""
    from diffact.data.spair import SPairDataset
    from diffact.tasks.correspondence import stream

    model, store, _ = store_screen
    store = FeatureStore.open(store)
    scored, transfer = [], stream.transfer_pair

    def recording_transfer(pair, src, trg, **kwargs):
        scored.append((src, trg))
        return transfer(pair, src, trg, **kwargs)

    monkeypatch.setattr(stream, "transfer_pair", recording_transfer)
    done = cli(*stream_args(model, stream_spair, tmp_path / "nn_pck.csv", "--buffer-mb", 0))
    assert done.returncode == 0, done.stderr[-2000:]
    expected = [(store.read_layer(src, name), store.read_layer(trg, name))
                for src, trg in map(stream.pair_ids, SPairDataset(stream_spair, "test")) for name in store.layers]
    assert len(scored) == len(expected)
    for (src, trg), (src_stored, trg_stored) in zip(scored, expected):
        assert torch.equal(src, src_stored) and torch.equal(trg, trg_stored)
        # and laid out as a store reads them (numpy sums a permuted view in another order)
        assert src.is_contiguous() and trg.is_contiguous()


def test_a_cache_smaller_than_the_pool_gives_the_same_csv(cli, stream_spair, store_screen, tmp_path):
    model, store, expected = store_screen
    store = FeatureStore.open(store)
    image_bytes = sum(c * h * w for c, h, w in map(store.shape, store.layers)) * 2  # float16
    pool_bytes = image_bytes * len(store.image_ids())
    buffer_mb = 1.5 * image_bytes / 2**20  # room for one image: the others are dropped and extracted again
    out = tmp_path / "nn_pck.csv"
    log = tmp_path / "screen.log"
    done = cli("--log", log, *stream_args(model, stream_spair, out, "--buffer-mb", buffer_mb))
    assert done.returncode == 0, done.stderr[-2000:]
    assert out.read_bytes() == expected.read_bytes()
    line = next(text for text in log.read_text().splitlines() if "image extractions" in text)
    extractions, images = map(int, re.search(r"(\d+) image extractions in \d+ batches for (\d+) images", line).groups())
    peak_mb = float(re.search(r"cache peak ([\d.e+-]+) MB", line).group(1))
    assert extractions > images  # evicted images were extracted again ...
    assert peak_mb * 2**20 <= buffer_mb * 2**20 < pool_bytes  # ... and the cache never held more than its limit


def test_cache_drops_the_image_needed_furthest_away():
    one = {"x": torch.zeros(256)}  # 1 KiB
    cache = FurthestUseCache(limit_bytes=2 * 1024, uses={"a": [1, 5], "b": [2], "c": [3]})
    cache.offer("a", one)
    cache.offer("b", one)
    cache.offer("c", dict(one))  # full: a (next use 1) and b (2) come before c (3), so c is not kept
    assert set(cache.held) == {"a", "b"}
    cache.used("a", 1)  # a's next use is now 5, after c's
    cache.offer("c", dict(one))
    assert set(cache.held) == {"b", "c"} and cache.peak_bytes <= 2 * 1024
    cache.used("b", 2)  # no use left: dropped at once
    assert set(cache.held) == {"c"} and cache.nbytes == 1024


@pytest.mark.parametrize("extra, needles", [
    ((), ["give --store, or stream from the model", "missing --model, --family, --layers"]),
    (("--store", "some/store", "--model", "m"), ["--store and --model exclude each other"]),
    (("--model", "m", "--family", "sd15", "--layers", "legacy", "--dataset-kind", "folder"),
     ["--dataset-kind must be spair"]),
    (("--model", "m", "--family", "sd15", "--layers", "legacy", "--buffer-mb", "-1"), ["--buffer-mb must be ≥ 0"]),
])
def test_bad_screen_source_is_one_clear_line(cli, stream_spair, tmp_path, extra, needles):
    out = tmp_path / "out" / "nn_pck.csv"
    done = cli("pck-screen", "--dataset-root", stream_spair, "--eval-size", 16, *extra, "--out", out)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr
    for needle in needles:
        assert needle in done.stderr
    assert not out.exists()


def test_screen_without_dataset_root_is_one_clear_line(cli, tmp_path):
    done = cli("pck-screen", "--model", "m", "--family", "sd15", "--layers", "legacy", "--out", tmp_path / "x.csv")
    assert done.returncode == 2 and "--dataset-root is required" in done.stderr and "Traceback" not in done.stderr
