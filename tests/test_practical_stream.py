"""The hard NN of a chosen layer set streamed from the model (issue #19, point 2): ``diffact corr-evaluate --method nn``
given the arguments of ``diffact extract`` instead of ``--store`` writes the store-based row byte for byte, whatever
its feature cache, and stores nothing. ``practical_nn`` uses it, so the DiTs' spair-screen pools (2.05 TB in the
paper profile) are never written."""

from __future__ import annotations

import pytest
import yaml

from conftest import STREAM_EXTRACTION as EXTRACTION

from diffact.extract.store import FeatureStore

EVALUATE = ["corr-evaluate", "--method", "nn", "--protocol", "heldout", "--feature-size", 8, "--eval-size", 16,
            "--entry", "sd15-tiny", "--layer-set", "practical", "--models", "sd15-tiny", "--families", "sd15"]


@pytest.fixture(scope="module")
def store_row(stream_spair, tiny_pipeline_dirs, tmp_path_factory):
    """The store path: extract the set, score two of its layers (file order reversed) from the store.
    Returns (model, layers file, CSV path)."""
    from diffact.cli import main

    tmp = tmp_path_factory.mktemp("store-row")
    model, store, csv, layers = tiny_pipeline_dirs["sd15"], tmp / "store", tmp / "nn-test.csv", tmp / "practical.yaml"
    assert main([str(a) for a in ["extract", "--model", model, "--dataset-root", stream_spair, *EXTRACTION,
                                  "--out", store]]) == 0
    chosen = FeatureStore.open(store).layers[:2][::-1]  # not the store's order: the file's order is the concat order
    layers.write_text(yaml.safe_dump({"name": "practical", "family": "sd15", "layers": chosen}))
    assert main([str(a) for a in [*EVALUATE, "--store", store, "--layers-file", layers, "--dataset-root", stream_spair,
                                  "--split", "test", "--device", "cpu", "--out", csv]]) == 0
    return model, layers, csv


def streamed(model, stream_spair, layers, out, *extra):
    return [*EVALUATE, "--model", model, "--dataset-root", stream_spair, *EXTRACTION, "--layers-file", layers, *extra,
            "--out", out]


@pytest.mark.parametrize("buffer_mb", [1024, 0])  # 0: every pair extracts its images again
def test_streamed_nn_row_is_byte_identical_to_the_store_row(cli, stream_spair, store_row, tmp_path, buffer_mb):
    model, layers, expected = store_row
    out = tmp_path / "results" / "nn-test.csv"
    done = cli(*streamed(model, stream_spair, layers, out, "--buffer-mb", buffer_mb))
    assert done.returncode == 0, done.stderr[-2000:]
    assert out.read_bytes() == expected.read_bytes()
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["nn-test.csv"]  # no store written


@pytest.mark.parametrize("extra, needle", [
    (("--store", "some/store"), "--store and --model exclude each other"),
    (("--method", "trained"), "for method nn only"),
    (("--layers-file", "a.yaml"), "got 2 files for one streamed extraction"),
])
def test_bad_streamed_evaluation_is_one_clear_line(cli, stream_spair, store_row, tmp_path, extra, needle):
    model, layers, _ = store_row
    out = tmp_path / "out" / "nn-test.csv"
    done = cli(*streamed(model, stream_spair, layers, out, *extra))
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and needle in done.stderr, done.stderr[-2000:]
    assert not out.exists()


def test_a_layer_the_extraction_lacks_is_named(cli, stream_spair, store_row, tmp_path):
    model, _, _ = store_row
    layers = tmp_path / "bad.yaml"
    layers.write_text(yaml.safe_dump({"name": "practical", "family": "sd15", "layers": ["no-such-layer"]}))
    done = cli(*streamed(model, stream_spair, layers, tmp_path / "nn-test.csv"))
    assert done.returncode == 2 and "no-such-layer" in done.stderr and "not in the extracted" in done.stderr
