"""``diffact property-maps`` streamed from the model (issue #19, point 2): given the arguments of ``diffact extract``
instead of ``--store`` it writes the store-based CSV byte for byte, and stores nothing."""

from __future__ import annotations

import numpy as np

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


def test_figure_maps_streamed_equal_the_store_ones_and_hold_what_the_notebooks_drew(cli, tiny_pipeline_dirs, tmp_path):
    """The figure maps (issue #19 point 3) that property-maps writes beside its table are the same bytes from a store
    and streamed, and hold what the notebooks computed from the store: PCA → RGB of each activation, the query point
    on the labels resized to the map, the similarity map to it."""
    import torch

    from diffact.analysis.plots import query_point, similarity_map
    from diffact.analysis.properties import resize_labels
    from diffact.analysis.property_runs import segmentation_labels
    from diffact.extract.store import FeatureStore
    from diffact.viz.figure_maps import FigureMaps
    from diffact.viz.pca import pca_rgb

    data = make_demo_seg(tmp_path / "seg", DemoSegConfig(kind="simple", size=32, n_train=2, n_test=1, seed=3))
    model, store = tiny_pipeline_dirs["sd15"], tmp_path / "store"
    maps = ["--labels-root", data, "--pairs", 200, "--seed", 0, "--figure-images", 2]
    assert cli("extract", "--model", model, "--dataset-root", data, *EXTRACTION, "--out", store).returncode == 0
    done = cli("property-maps", "--store", store, *maps, "--out", tmp_path / "a.csv", "--figure-maps", tmp_path / "a.npz")
    assert done.returncode == 0, done.stderr[-2000:]
    done = cli("property-maps", "--model", model, "--dataset-root", data, *EXTRACTION, *maps, "--out", tmp_path / "b.csv",
               "--figure-maps", tmp_path / "b.npz")
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()

    fs, fm = FeatureStore.open(store), FigureMaps(tmp_path / "b.npz")
    assert fm.image_ids == fs.image_ids()[:2] and sorted(fm.layers) == sorted(fs.layers)
    assert fm.image_path(fm.image_ids[0]) and fm.image_path(fm.image_ids[0]).endswith(".png")
    labels_of, _ = segmentation_labels(data)
    for image_id in fm.image_ids:
        assert (fm.labels(image_id) == labels_of(image_id)).all()
        for name in fs.layers[:: max(1, len(fs.layers) // 12)]:
            feature = fs.read_layer(image_id, name)
            size = 2 * feature.shape[-1]
            assert np.array_equal(fm.rgb(image_id, name, size), pca_rgb(feature, size))
            point = query_point(resize_labels(labels_of(image_id), *feature.shape[1:]))
            assert fm.point(image_id, name) == point
            assert np.array_equal(fm.similarity(image_id, name), similarity_map(feature, point))
            assert fm.shape(name) == tuple(feature.shape[1:])
    assert isinstance(feature, torch.Tensor)


def test_figure_maps_command_streams_the_shown_layers(cli, tiny_pipeline_dirs, tmp_path):
    """`diffact figure-maps` (Fig 3's PCA maps): streamed equals the store's, --show keeps its order, and an
    activation the set does not hold is one clear line."""
    from diffact.viz.figure_maps import FigureMaps

    data = make_demo_seg(tmp_path / "seg", DemoSegConfig(kind="simple", size=32, n_train=2, n_test=1, seed=3))
    model, store = tiny_pipeline_dirs["sd15"], tmp_path / "store"
    assert cli("extract", "--model", model, "--dataset-root", data, *EXTRACTION, "--out", store).returncode == 0
    show = ["--show", "mid-vit-out", "down-level0-repeat0-res-out"]
    done = cli("figure-maps", "--store", store, *show, "--images", 3, "--out", tmp_path / "a.npz")
    assert done.returncode == 0, done.stderr[-2000:]
    done = cli("figure-maps", "--model", model, "--dataset-root", data, *EXTRACTION, *show, "--images", 3,
               "--out", tmp_path / "b.npz")
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    fm = FigureMaps(tmp_path / "b.npz")
    assert fm.layers == ["mid-vit-out", "down-level0-repeat0-res-out"] and len(fm.image_ids) == 3
    done = cli("figure-maps", "--store", store, "--show", "up-level9-nothing", "--out", tmp_path / "c.npz")
    assert done.returncode == 2 and "--show: up-level9-nothing not among" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "c.npz").exists()
