"""The public Python API (issue #17 point 4): ``diffact.FeatureExtractor`` gives the CLI store's features for
the same settings, takes paths / PIL images / arrays / tensors alike, and ``diffact.list_activations`` is the
catalog ``diffact layers`` prints; the example notebook runs on a tiny model."""

import json
from pathlib import Path

import pytest
import torch

import diffact
from diffact.data.images import load_rgb
from diffact.utils.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
LAYERS = "up-level1-repeat1-vit-block0-cross-q,up-level2-repeat2-res-out,mid-vit-out"


@pytest.fixture(scope="module")
def extractor(tiny_pipeline_dirs):
    return diffact.FeatureExtractor.from_pretrained(str(tiny_pipeline_dirs["sd15"]), layers=LAYERS.split(","),
                                                    image_size=64, prompt="a photo", device="cpu")


def test_api_features_equal_the_cli_store(extractor, tiny_pipeline_dirs, image_folder, tmp_path, cli):
    from diffact.extract.store import FeatureStore

    out = tmp_path / "store"
    done = cli("extract", "--model", tiny_pipeline_dirs["sd15"], "--family", "sd15", "--layers", LAYERS,
               "--dataset-kind", "folder", "--dataset-root", image_folder, "--out", out, "--image-size", "64",
               "--prompt", "a photo", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    store = FeatureStore.open(out)
    paths = sorted(image_folder.glob("*.jpg"))
    features = extractor(paths, batch_size=1)  # ids default to the stems, as the folder dataset names them
    assert list(features) == store.layers == extractor.layers
    for b, path in enumerate(paths):
        stored = store.read(path.stem)
        for name in extractor.layers:
            assert torch.equal(features[name][b], stored[name]), (path.stem, name)


def test_paths_pil_images_arrays_and_tensors_give_the_same_features(extractor, image_folder):
    from PIL import Image

    path = sorted(image_folder.glob("*.jpg"))[0]
    array = load_rgb(path)
    tensor = extractor.model_input(path)
    by_kind = [extractor(x, ids=["x"]) for x in (path, Image.fromarray(array), array, tensor, tensor[None])]
    for other in by_kind[1:]:
        for name, value in by_kind[0].items():
            assert torch.equal(value, other[name])
    assert by_kind[0][extractor.layers[0]].shape[0] == 1


def test_ids_seed_the_noise_and_bad_inputs_are_named(extractor, image_folder):
    path = sorted(image_folder.glob("*.jpg"))[0]
    name = extractor.layers[-1]
    same, other = extractor(path, ids=["a"])[name], extractor(path, ids=["b"])[name]
    assert torch.equal(same, extractor(path, ids=["a"])[name]) and not torch.equal(same, other)
    with pytest.raises(ConfigError, match="one distinct id per image"):
        extractor([path, path], ids=["a", "a"])
    with pytest.raises(ConfigError, match="a tensor image must be the model input 3×64×64"):
        extractor(torch.zeros(3, 32, 32))
    with pytest.raises(ConfigError, match="cannot read an image from a dict"):
        extractor({"not": "an image"})


def test_layer_set_names_resolve_in_the_models_family(tiny_pipeline_dirs):
    from diffact.extract.layersets import resolve_set
    from diffact.families import family_of

    fx = diffact.FeatureExtractor.from_pretrained(str(tiny_pipeline_dirs["sdxl"]), image_size=64, device="cpu")
    assert fx.family == "sdxl" and fx.settings.image_size == 64
    assert fx.layers == resolve_set(fx.extractor.unet, family_of(fx.extractor.unet).name, "practical")


def test_list_activations_is_what_diffact_layers_prints(cli):
    rows = diffact.list_activations("stabilityai/stable-diffusion-xl-base-1.0")
    printed = cli("layers", "--model", "stabilityai/stable-diffusion-xl-base-1.0", "--json")
    assert rows == [json.loads(line) for line in printed.stdout.splitlines()]
    assert rows[0]["name"] == "unet-in" and rows[0]["height"] == 128  # SDXL's native 1024 px


@pytest.mark.slow
def test_the_example_notebook_runs_on_a_tiny_model(tiny_pipeline_dirs, tmp_path, cli):
    out_stem = tmp_path / "your_images"
    done = cli("notebook", ROOT / "notebooks" / "examples" / "your_images.py", "--executed", tmp_path / "run.ipynb",
               "-p", f"model={tiny_pipeline_dirs['sd15']}", "-p", f"out_stem={out_stem}")
    assert done.returncode == 0, done.stderr
    assert (out_stem.with_suffix(".png")).stat().st_size > 1000
    outputs = json.dumps(json.loads((tmp_path / "run.ipynb").read_text())["cells"])
    assert "up-level1-repeat1-vit-block0-cross-q: (1, " in outputs
