"""``diffact property-maps`` streamed from the model (issue #19, point 2): given the arguments of ``diffact extract``
instead of ``--store`` it writes the store-based CSV byte for byte, and stores nothing."""

from __future__ import annotations

from diffact.data.demo_seg import DemoSegConfig, make_demo_seg

# float16 storage and batches of 2 over 3 images (the last batch is short): granularity and locality are float
# sums over the maps, so a missed cast or other batch partners would change the CSV. The screen set has token
# activations (attention q/k/v), whose maps numpy would sum in another order unless laid out as a store's.
EXTRACTION = ["--family", "sd15", "--layers", "screen", "--dataset-kind", "ddpmseg", "--t", 50, "--image-size", 32,
              "--prompt", "a photo", "--batch-size", 2, "--storage-dtype", "float16", "--device", "cpu"]


def test_streamed_property_maps_equal_the_store_ones(cli, tiny_pipeline_dirs, tmp_path):
    data = make_demo_seg(tmp_path / "seg", DemoSegConfig(kind="simple", size=32, n_train=2, n_test=1, seed=3))
    model, store = tiny_pipeline_dirs["sd15"], tmp_path / "store"
    maps = ["--labels-root", data, "--pairs", 200, "--seed", 0]
    done = cli("extract", "--model", model, "--dataset-root", data, *EXTRACTION, "--out", store)
    assert done.returncode == 0, done.stderr[-2000:]
    done = cli("property-maps", "--store", store, *maps, "--out", tmp_path / "from_store.csv")
    assert done.returncode == 0, done.stderr[-2000:]
    streamed = tmp_path / "streamed" / "maps.csv"
    done = cli("property-maps", "--model", model, "--dataset-root", data, *EXTRACTION, *maps, "--out", streamed)
    assert done.returncode == 0, done.stderr[-2000:]
    assert streamed.read_bytes() == (tmp_path / "from_store.csv").read_bytes()
    assert len(streamed.read_text().splitlines()) > 2
    assert [p.name for p in streamed.parent.iterdir()] == ["maps.csv"]  # no store beside it


def test_property_maps_without_store_or_model_is_one_clear_line(cli, tmp_path):
    out = tmp_path / "maps.csv"
    done = cli("property-maps", "--model", "m", "--family", "sd15", "--out", out)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "missing --layers, --dataset-kind, --dataset-root" in done.stderr and "Traceback" not in done.stderr
    done = cli("property-maps", "--store", tmp_path, "--model", "m", "--out", out)
    assert done.returncode == 2 and "--store and --model exclude each other" in done.stderr
    assert not out.exists()
