"""The extraction recipe and the feature store on saved tiny pipelines (paper §3, docs/paper.md §2.1)."""

import json
import pytest
import torch

from diffact.data.registry import folder_images
from diffact.extract.pipeline import DiffusionFeatureExtractor, ExtractionSettings, grid_timestep
from diffact.extract.run import extract_to_store
from diffact.extract.store import FeatureStore
from diffact.models.loading import load_pipeline
from diffact.utils.errors import ConfigError, DataError, LayerError, ModelError

LAYERS = ["up-level1-repeat1-vit-block0-cross-q", "up-level2-upsampler-out", "up-level3-repeat0-vit-block0-self-k"]


@pytest.fixture(scope="module")
def sd15(tiny_pipeline_dirs):
    return load_pipeline(str(tiny_pipeline_dirs["sd15"]), device="cpu")


@pytest.fixture(scope="module")
def sdxl(tiny_pipeline_dirs):
    return load_pipeline(str(tiny_pipeline_dirs["sdxl"]), device="cpu")


def _images(n=2, size=32, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_grid_timestep_matches_the_paper_code(sd15, sdxl):
    assert grid_timestep(sd15.scheduler, 50) == 51  # PNDM, leading + offset 1 (docs/paper.md §2.1: 51 for SD1.5)
    assert grid_timestep(sdxl.scheduler, 50) == 50  # Euler, leading (SDXL: 50)
    with pytest.raises(ConfigError, match="outside the scheduler's range"):
        grid_timestep(sd15.scheduler, 1001)


def test_same_seed_same_features_other_seed_other_features(sd15):
    settings = ExtractionSettings(t=50, prompt="a photo", image_size=32, noise_seed=3)
    a = DiffusionFeatureExtractor(sd15, LAYERS, settings)(_images(), ["a", "b"])
    b = DiffusionFeatureExtractor(sd15, LAYERS, settings)(_images(), ["a", "b"])
    c = DiffusionFeatureExtractor(sd15, LAYERS, ExtractionSettings(t=50, prompt="a photo", image_size=32,
                                                                    noise_seed=4))(_images(), ["a", "b"])
    for name in LAYERS:
        assert torch.equal(a[name], b[name])
        assert not torch.equal(a[name], c[name])
    # token tensors come back as B×C×H×W (latent 16×16 at 32 px: level1 = 4×4, level3 = 16×16)
    assert a[LAYERS[0]].shape == (2, 64, 4, 4) and a[LAYERS[2]].shape == (2, 16, 16, 16)


def test_noise_is_seeded_per_image_not_per_batch(sd15):
    ex = DiffusionFeatureExtractor(sd15, LAYERS, ExtractionSettings(image_size=32))
    images = _images()
    both = ex(images, ["a", "b"])
    second = ex(images[1:], ["b"])
    torch.testing.assert_close(both[LAYERS[1]][1:], second[LAYERS[1]], atol=1e-5, rtol=1e-4)


def test_sdxl_extraction_and_ensemble(sdxl):
    names = ["up-level0-repeat0-vit-block1-out", "up-level1-repeat0-vit-block0-cross-q"]
    one = DiffusionFeatureExtractor(sdxl, names, ExtractionSettings(image_size=32, ensemble=1))(_images(1), ["x"])
    three = DiffusionFeatureExtractor(sdxl, names, ExtractionSettings(image_size=32, ensemble=3))(_images(1), ["x"])
    assert one[names[0]].shape == three[names[0]].shape
    assert not torch.equal(one[names[0]], three[names[0]])
    # the ensemble mean is closer to the vae-mean/no-noise direction: its draws average out
    assert three[names[1]].std() <= one[names[1]].std() * 1.5


def test_releasing_the_text_encoders_keeps_the_features(tiny_pipeline_dirs):
    """An extractor that drops its pipeline's text encoders once the prompt is encoded (what `diffact extract` and
    `noise-share` ask for: SDXL's are 3.3 GB in float32) gives the same features as one that keeps them."""
    names = ["up-level0-repeat0-vit-block1-out", "up-level1-repeat0-vit-block0-cross-q"]
    settings = ExtractionSettings(image_size=32, prompt="a photo of a cat")
    kept = DiffusionFeatureExtractor(load_pipeline(str(tiny_pipeline_dirs["sdxl"]), device="cpu"), names, settings)
    pipe = load_pipeline(str(tiny_pipeline_dirs["sdxl"]), device="cpu")
    released = DiffusionFeatureExtractor(pipe, names, settings, release_text_encoders=True)
    assert pipe.text_encoder is None and pipe.text_encoder_2 is None
    assert kept.pipe.text_encoder is not None
    a, b = kept(_images(1), ["x"]), released(_images(1), ["x"])
    assert all(torch.equal(a[n], b[n]) for n in names)


def test_store_resume_is_byte_identical(sd15, image_folder, tmp_path):
    images = folder_images(image_folder)
    settings = ExtractionSettings(image_size=32, prompt="a photo")
    full = extract_to_store(sd15, LAYERS, images, tmp_path / "full", {"k": 1}, settings)
    # simulate an interruption: only the first image was written, plus a stray partial temp file
    partial = extract_to_store(sd15, LAYERS, images[:1], tmp_path / "part", {"k": 1}, settings)
    (partial.root / "shards" / ".img_1.xyz.part.safetensors").write_bytes(b"junk")
    resumed = extract_to_store(sd15, LAYERS, images, tmp_path / "part", {"k": 1}, settings)
    for image_id, _ in images:
        assert full.shard_path(image_id).read_bytes() == resumed.shard_path(image_id).read_bytes()
    assert json.loads((resumed.root / "complete.json").read_text())["image_ids"] == [i for i, _ in images]
    assert resumed.image_ids() == [i for i, _ in images]  # the stray temp file is not a shard
    assert resumed.shape(LAYERS[0]) == (64, 4, 4)


def test_resume_of_a_partly_written_batch_is_byte_identical(sd15, image_folder, tmp_path):
    import shutil

    images = folder_images(image_folder)
    settings = ExtractionSettings(image_size=32, prompt="a photo")
    full = extract_to_store(sd15, LAYERS, images, tmp_path / "full", {"k": 1}, settings, batch_size=2)
    # batches [img_0, img_1] [img_2]; img_0's file lost: it must be recomputed beside img_1 (a batch of one
    # rounds differently on CPU), and img_1's file left as it is
    shutil.copytree(full.root, tmp_path / "part")
    (tmp_path / "part" / "shards" / "img_0.safetensors").unlink()
    (tmp_path / "part" / "complete.json").unlink()
    resumed = extract_to_store(sd15, LAYERS, images, tmp_path / "part", {"k": 1}, settings, batch_size=2)
    for image_id, _ in images:
        assert full.shard_path(image_id).read_bytes() == resumed.shard_path(image_id).read_bytes(), image_id


def test_store_rejects_other_settings_and_reports_corruption(sd15, image_folder, tmp_path):
    images = folder_images(image_folder)[:1]
    store = extract_to_store(sd15, LAYERS[:1], images, tmp_path / "s", {"k": 1}, ExtractionSettings(image_size=32))
    with pytest.raises(DataError, match="other settings"):
        FeatureStore.create(tmp_path / "s", {"k": 2})
    store.shard_path(images[0][0]).write_bytes(b"\x00" * 20)
    with pytest.raises(DataError, match="corrupted feature shard"):
        FeatureStore.open(tmp_path / "s").read(images[0][0])
    with pytest.raises(LayerError, match="unknown layer 'nope'"):
        store.read(images[0][0], ["nope"])
    with pytest.raises(DataError, match="invalid image id"):
        store.shard_path("../escape")


def test_float16_storage_halves_the_shard(sd15, image_folder, tmp_path):
    images = folder_images(image_folder)[:1]
    settings = ExtractionSettings(image_size=32)
    s32 = extract_to_store(sd15, LAYERS, images, tmp_path / "a", {"k": 1}, settings)
    s16 = extract_to_store(sd15, LAYERS, images, tmp_path / "b", {"k": 2}, settings, storage_dtype="float16")
    size32, size16 = (s.shard_path(images[0][0]).stat().st_size for s in (s32, s16))
    assert size16 < 0.6 * size32
    torch.testing.assert_close(s16.read_layer(images[0][0], LAYERS[0]), s32.read_layer(images[0][0], LAYERS[0]),
                               atol=1e-2, rtol=1e-2)


def test_model_folder_without_weights_is_a_clear_error(tiny_pipeline_dirs, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_pipeline_dirs["sd15"], broken)
    for weights in (broken / "unet").glob("*.safetensors"):
        weights.unlink()
    with pytest.raises(ModelError, match="no weights"):
        load_pipeline(str(broken))
    with pytest.raises(ModelError, match="does not exist"):
        load_pipeline(str(tmp_path / "missing"))


def test_cli_extract_and_layers(tiny_pipeline_dirs, image_folder, tmp_path, cli):
    out = tmp_path / "store"
    done = cli("extract", "--model", str(tiny_pipeline_dirs["sd15"]), "--family", "sd15", "--layers", "practical",
                "--dataset-kind", "folder", "--dataset-root", str(image_folder), "--out", str(out),
                "--image-size", "32", "--prompt", "a photo", "--dtype", "auto", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    store = FeatureStore.open(out)
    # `auto` names the store (the workflow hashes the config); the recipe says which dtype ran (bfloat16 where this
    # CPU has native kernels), and a store is never continued in another dtype on another kind of machine.
    from diffact.models.loading import cpu_supports
    ran = "bfloat16" if cpu_supports("bfloat16") else "float32"
    assert store.settings["extraction"]["dtype"] == "auto" and store.meta["recipe"]["model_dtype"] == ran
    with pytest.raises(DataError, match="begun with the model in " + ran):
        FeatureStore.create(out, store.settings, recipe={**store.meta["recipe"], "model_dtype": "float16"})
    assert store.layers == ["up-level1-repeat1-vit-block0-cross-q", "up-level1-repeat2-res-out",
                            "up-level2-repeat1-vit-block0-cross-q", "up-level3-repeat0-vit-block0-self-k"]
    assert store.settings["grid_timestep"] == 51 and len(store.image_ids()) == 3
    bad = cli("extract", "--model", str(tiny_pipeline_dirs["sd15"]), "--family", "sd15", "--layers",
               "up-level1-repeat1-vit-block0-cros-q", "--dataset-kind", "folder", "--dataset-root", str(image_folder),
               "--out", str(tmp_path / "bad"), "--image-size", "32")
    assert bad.returncode == 2 and "closest valid names: up-level1-repeat1-vit-block0-cross-q" in bad.stderr
    assert not (tmp_path / "bad" / "complete.json").exists()
    listing = cli("layers", "--model", str(tiny_pipeline_dirs["sdxl"]), "--json", "--resolution", "64")
    rows = [json.loads(line) for line in listing.stdout.splitlines()]
    assert listing.returncode == 0 and rows[0]["name"] == "unet-in" and rows[0]["height"] == 32
