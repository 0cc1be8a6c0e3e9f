"""Bad inputs (issue #11): half-downloaded datasets, typo'd layer names, broken configs and caches.

Every case checks three things: the run fails (non-zero exit status of the CLI / snakemake, or a specific
``diffact.utils.errors`` exception from a loader), the message names the file, field or layer at fault,
and no output was left half-written (the output file does not exist; no temporary ``*.part*`` file is
left in the output folder). The last part audits the code for unsafe deserialisation and path handling.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from diffact.data.demo_spair import build_demo_spair
from diffact.data.registry import dataset_images
from diffact.extract.store import FeatureStore
from diffact.utils.errors import ConfigError, DataError
from diffact.utils.io import atomic_dir, atomic_path, remove_stale_parts
from diffact.utils.paths import checked_join

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
STORE_LAYERS = {"up-level0-upsampler-out": (4, 2, 2), "up-level1-upsampler-out": (2, 4, 4)}


# ---- helpers -------------------------------------------------------------------------------------------


def partial_files(folder: Path) -> list[Path]:
    """Temporary files of interrupted writes (``atomic_path`` / ``atomic_dir`` names) under ``folder``."""
    return [p for p in folder.rglob("*") if ".part" in p.name] if folder.exists() else []


def assert_fails(done, *needles: str) -> str:
    """The CLI exited with the user-error status and its one-line message names every needle."""
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    message = done.stderr
    for needle in needles:
        assert needle in message, f"{needle!r} not in: {message[-2000:]}"
    assert "Traceback" not in message
    return message


def assert_nothing_written(out: Path, folder: Path | None = None) -> None:
    assert not out.exists(), f"{out} was written"
    folder = folder or out.parent
    assert not partial_files(folder), partial_files(folder)


def extract_args(model, kind, root, out, layers="legacy", family="sd15", *extra) -> list:
    return ["extract", "--model", model, "--family", family, "--layers", layers, "--dataset-kind", kind,
            "--dataset-root", root, "--image-size", 32, "--device", "cpu", "--out", out, *extra]


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


# ---- fixtures ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spair_template(tmp_path_factory) -> Path:
    return build_demo_spair(tmp_path_factory.mktemp("spair") / "spair", n_images=2, pairs_per_image=3,
                            image_size=32, max_keypoints=5)


@pytest.fixture
def spair(spair_template, tmp_path) -> Path:
    """A private copy of a small demo SPair tree that a case may damage."""
    return Path(shutil.copytree(spair_template, tmp_path / "spair"))


def first_pair(root: Path, split: str = "test") -> Path:
    return sorted((root / "PairAnnotation" / split).glob("*.json"))[0]


@pytest.fixture
def seg(tmp_path) -> Path:
    """A DDPM-seg tree (dataset.json with 3 classes; 2 train + 1 test 8×8 images with labels)."""
    root = tmp_path / "seg"
    for split, stems in (("train", ("a", "b")), ("test", ("c",))):
        folder = root / "real" / split
        folder.mkdir(parents=True)
        for stem in stems:
            Image.fromarray(np.full((8, 8, 3), 100, dtype=np.uint8)).save(folder / f"{stem}.png")
            np.save(folder / f"{stem}.npy", np.ones((8, 8), dtype=np.uint8))
    (root / "dataset.json").write_text(json.dumps({"name": "tiny", "num_classes": 3}))
    return root


@pytest.fixture
def image_dir(tmp_path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("b_good", "c_good"):
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(folder / f"{name}.jpg")
    return folder


@pytest.fixture
def store(spair_template, tmp_path) -> Path:
    """A finished feature store for the test split of ``spair_template`` (random features)."""
    root = tmp_path / "store"
    fs = FeatureStore.create(root, {"case": "bad-inputs"}, layers=STORE_LAYERS)
    ids = [i for i, _ in dataset_images("spair", spair_template, "test")]
    g = torch.Generator().manual_seed(0)
    for image_id in ids:
        fs.write(image_id, {n: torch.randn(*shape, generator=g) for n, shape in STORE_LAYERS.items()})
    fs.finalize(ids)
    return root


# ---- datasets through the CLI --------------------------------------------------------------------------


def test_missing_dataset_root(cli, tiny_pipeline_dirs, tmp_path):
    missing, out = tmp_path / "SPair-71k", tmp_path / "features" / "store"
    done = cli(*extract_args(tiny_pipeline_dirs["sd15"], "spair", missing, out))
    assert_fails(done, "SPair root", str(missing), "does not exist")
    assert_nothing_written(out, tmp_path)


def test_spair_pair_missing_a_field(cli, spair, tmp_path):
    path = first_pair(spair)
    edit_json(path, lambda d: d.pop("trg_kps"))
    out = tmp_path / "out" / "pixels.csv"
    done = cli("pck-pixels", "--dataset-root", spair, "--image-size", 32, "--eval-size", 32, "--out", out)
    assert_fails(done, path.name, "field 'trg_kps' is missing")
    assert_nothing_written(out)


def test_spair_keypoint_outside_the_image(cli, spair, tmp_path):
    path = first_pair(spair)
    edit_json(path, lambda d: d["src_kps"].__setitem__(0, [5000, 3]))
    out = tmp_path / "out" / "pixels.csv"
    done = cli("pck-pixels", "--dataset-root", spair, "--image-size", 32, "--eval-size", 32, "--out", out)
    assert_fails(done, path.name, "keypoint 'src_kps'[0] = [5000, 3] lies outside")
    assert_nothing_written(out)


def test_spair_annotation_that_is_not_json(cli, spair, tmp_path):
    path = first_pair(spair)
    path.write_text(path.read_text()[:40])  # a download cut short
    out = tmp_path / "out" / "pixels.csv"
    done = cli("pck-pixels", "--dataset-root", spair, "--image-size", 32, "--eval-size", 32, "--out", out)
    assert_fails(done, path.name, "not valid JSON")
    assert_nothing_written(out)


def test_spair_layout_lists_a_pair_without_annotation(cli, spair, tmp_path):
    layout = spair / "Layout" / "large" / "test.txt"
    layout.write_text(layout.read_text() + "999999-nosrc-notrg:astronaut\n")
    out = tmp_path / "out" / "pixels.csv"
    done = cli("pck-pixels", "--dataset-root", spair, "--image-size", 32, "--eval-size", 32, "--out", out)
    assert_fails(done, "test.txt", "999999-nosrc-notrg:astronaut", "does not exist")
    assert_nothing_written(out)


def test_spair_image_missing_from_a_half_downloaded_root(cli, spair, tmp_path):
    path = first_pair(spair)
    image = spair / "JPEGImages" / json.loads(path.read_text())["category"] / json.loads(path.read_text())["trg_imname"]
    image.unlink()
    out = tmp_path / "out" / "pixels.csv"
    done = cli("pck-pixels", "--dataset-root", spair, "--image-size", 32, "--eval-size", 32, "--out", out)
    assert_fails(done, str(image), "field 'trg_imname'", "does not exist")
    assert_nothing_written(out)


@pytest.mark.parametrize("imname, reason", [("../../../../../../etc/hostname", "climbs out with '..'"),
                                            ("/etc/hostname", "is an absolute path")])
def test_spair_image_name_cannot_leave_the_root(cli, spair, tmp_path, imname, reason):
    path = first_pair(spair)
    edit_json(path, lambda d: d.__setitem__("src_imname", imname))
    out = tmp_path / "out" / "pixels.csv"
    done = cli("pck-pixels", "--dataset-root", spair, "--image-size", 32, "--eval-size", 32, "--out", out)
    assert_fails(done, path.name, "field 'src_imname'", imname, reason)
    assert_nothing_written(out)


def test_check_spair_lists_every_problem(cli, spair):
    bad_field, bad_kp = sorted((spair / "PairAnnotation" / "test").glob("*.json"))[:2]
    edit_json(bad_field, lambda d: d.pop("src_bndbox"))
    edit_json(bad_kp, lambda d: d["trg_kps"].__setitem__(0, [1, 9999]))
    done = cli("check-spair", "--root", spair)
    assert done.returncode == 1
    assert f"{bad_field.name}: field 'src_bndbox' is missing" in done.stdout + done.stderr
    assert re.search(rf"{re.escape(bad_kp.name)}: keypoint 'trg_kps'\[0\] = \[1, 9999\] lies outside", done.stdout + done.stderr)


def test_truncated_image_in_an_image_folder(cli, tiny_pipeline_dirs, image_dir, tmp_path):
    good = (image_dir / "b_good.jpg").read_bytes()
    (image_dir / "a_truncated.jpg").write_bytes(good[: len(good) // 2])  # sorted first: fails in the first batch
    out = tmp_path / "features" / "store"
    done = cli(*extract_args(tiny_pipeline_dirs["sd15"], "folder", image_dir, out))
    assert_fails(done, "a_truncated.jpg", "truncated or corrupt")
    assert not (out / "complete.json").exists() and not partial_files(out.parent)
    # The store may keep shards written before the failure (resume skips them); none of them is damaged.
    for shard in out.rglob("*.safetensors"):
        FeatureStore.open(out).read(str(shard.relative_to(out / "shards").with_suffix("")))


def test_non_image_file_in_an_image_folder(cli, tiny_pipeline_dirs, image_dir, tmp_path):
    (image_dir / "a_notes.png").write_text("these are my notes, not a picture\n")
    out = tmp_path / "features" / "store"
    done = cli(*extract_args(tiny_pipeline_dirs["sd15"], "folder", image_dir, out))
    assert_fails(done, "a_notes.png", "not a readable image")
    assert not (out / "complete.json").exists() and not partial_files(out.parent)


def test_empty_dataset(cli, tiny_pipeline_dirs, tmp_path):
    empty, out = tmp_path / "empty", tmp_path / "features" / "store"
    empty.mkdir()
    (empty / "README.txt").write_text("images go here\n")
    done = cli(*extract_args(tiny_pipeline_dirs["sd15"], "folder", empty, out))
    assert_fails(done, f"{empty}: this folder dataset has no images (image files end in .jpg")
    assert_nothing_written(out, tmp_path)


def test_label_array_of_the_wrong_shape(cli, tiny_pipeline_dirs, seg, tmp_path):
    np.save(seg / "real" / "train" / "b.npy", np.zeros((8, 7), dtype=np.uint8))
    out = tmp_path / "features" / "store"
    done = cli(*extract_args(tiny_pipeline_dirs["sd15"], "ddpmseg", seg, out))
    assert_fails(done, "b.npy", "label shape (8, 7) does not match its image b.png")
    assert_nothing_written(out, tmp_path)


def test_label_array_with_classes_beyond_k(cli, tiny_pipeline_dirs, seg, tmp_path):
    np.save(seg / "real" / "test" / "c.npy", np.full((8, 8), 7, dtype=np.uint8))
    out = tmp_path / "features" / "store"
    done = cli(*extract_args(tiny_pipeline_dirs["sd15"], "ddpmseg", seg, out))
    assert_fails(done, "c.npy", "class ids [7] out of range; expected 0..2")
    assert_nothing_written(out, tmp_path)


def test_label_array_holding_a_pickle_is_not_unpickled(cli, tiny_pipeline_dirs, seg, tmp_path):
    np.save(seg / "real" / "train" / "a.npy", np.array([{"payload": 1}], dtype=object), allow_pickle=True)
    out = tmp_path / "features" / "store"
    done = cli(*extract_args(tiny_pipeline_dirs["sd15"], "ddpmseg", seg, out))
    assert_fails(done, "a.npy", "cannot read label array")
    assert_nothing_written(out, tmp_path)


def test_image_without_its_label_array(cli, tiny_pipeline_dirs, seg, tmp_path):
    (seg / "real" / "train" / "a.npy").unlink()
    out = tmp_path / "features" / "store"
    done = cli(*extract_args(tiny_pipeline_dirs["sd15"], "ddpmseg", seg, out))
    assert_fails(done, "a.png", "no label array a.npy")
    assert_nothing_written(out, tmp_path)


# ---- models, layers, timesteps ---------------------------------------------------------------------------


def test_unknown_layer_name(cli, tiny_pipeline_dirs, spair, tmp_path):
    out = tmp_path / "features" / "store"
    done = cli(*extract_args(tiny_pipeline_dirs["sd15"], "spair", spair, out, "up-level1-upsampler-outt"))
    assert_fails(done, "unknown layer 'up-level1-upsampler-outt'", "closest valid names: up-level1-upsampler-out")
    assert_nothing_written(out, tmp_path)


def test_layer_set_naming_a_layer_the_model_does_not_have(cli, tiny_pipeline_dirs, spair, tmp_path, monkeypatch):
    # A set written for a deeper model: block 12 of an up-level0 ViT, which has blocks 0-9 in SDXL (and the demo's).
    import shutil

    from diffact.extract import layersets

    layers = tmp_path / "layers"
    shutil.copytree(layersets.LAYER_DIR, layers)
    (layers / "sdxl" / "deeper.yaml").write_text(
        "name: deeper\nfamily: sdxl\nlayers:\n  - up-level0-repeat0-vit-block12-out\n  - up-level1-upsampler-out\n")
    monkeypatch.setattr(layersets, "LAYER_DIR", layers)
    out = tmp_path / "features" / "store"
    done = cli(*extract_args(tiny_pipeline_dirs["sdxl"], "spair", spair, out, "deeper", "sdxl"))
    message = assert_fails(done, "unknown layer 'up-level0-repeat0-vit-block12-out'", str(layers / "sdxl" / "deeper.yaml"))
    assert "closest valid names: up-level0-repeat0-vit-block" in message
    assert_nothing_written(out, tmp_path / "features")


def test_store_does_not_hold_the_requested_layer(cli, spair_template, store, tmp_path):
    out = tmp_path / "out" / "nn_pck.csv"
    done = cli("pck-screen", "--store", store, "--dataset-root", spair_template, "--layers", "mid-vit-out",
               "--eval-size", 16, "--out", out)
    assert_fails(done, "unknown layer 'mid-vit-out'", f"feature store {store}")
    assert_nothing_written(out)


def test_unknown_layer_set(cli, tiny_pipeline_dirs):
    done = cli("layers", "--model", tiny_pipeline_dirs["sd15"], "--set", "practicle", "--family", "sd15")
    assert_fails(done, "no layer set 'practicle'", "config/layers/sd15/practicle.yaml", "available: ")


@pytest.mark.parametrize("t", [0, 1001])
def test_timestep_outside_the_schedulers_range(cli, tiny_pipeline_dirs, spair, tmp_path, t):
    out = tmp_path / "features" / "store"
    done = cli(*extract_args(tiny_pipeline_dirs["sd15"], "spair", spair, out, "legacy", "sd15", "--t", t))
    assert_fails(done, f"timestep t={t} outside the scheduler's range 1..1000")
    assert_nothing_written(out, tmp_path)


def test_unsupported_model_class(cli, spair, tmp_path):
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    folder = tmp_path / "ddpm-model"
    unet = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 8), norm_num_groups=4,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       layers_per_block=1)
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler()).save_pretrained(folder)
    out = tmp_path / "features" / "store"
    done = cli(*extract_args(folder, "spair", spair, out))
    assert_fails(done, str(folder), "unsupported model class DDPMPipeline with denoiser UNet2DModel")
    assert_nothing_written(out, tmp_path)


def test_model_folder_without_weights(cli, tiny_pipeline_dirs, spair, tmp_path):
    folder = Path(shutil.copytree(tiny_pipeline_dirs["sd15"], tmp_path / "half-downloaded"))
    for weights in (folder / "unet").glob("*.safetensors"):
        weights.unlink()
    out = tmp_path / "features" / "store"
    done = cli(*extract_args(folder, "spair", spair, out))
    assert_fails(done, f"{folder}/unet", "no weights")
    assert_nothing_written(out, tmp_path)


def test_model_folder_that_does_not_exist(cli, spair, tmp_path):
    missing, out = tmp_path / "models" / "sd15-tiny", tmp_path / "features" / "store"
    done = cli(*extract_args(missing, "spair", spair, out))
    assert_fails(done, f"model folder {missing} does not exist")
    assert_nothing_written(out, tmp_path)


def test_unsupported_dtype(cli, tiny_pipeline_dirs, spair, tmp_path):
    out = tmp_path / "features" / "store"
    done = cli(*extract_args(tiny_pipeline_dirs["sd15"], "spair", spair, out, "legacy", "sd15", "--dtype", "float64"))
    assert_fails(done, "'float64'", "dtype")
    assert_nothing_written(out, tmp_path)


def test_output_folder_without_the_settings_key(cli, tiny_pipeline_dirs, spair, tmp_path):
    out = tmp_path / "features" / "legacy-000000000000"
    done = cli(*extract_args(tiny_pipeline_dirs["sd15"], "spair", spair, out, "legacy", "sd15", "--check-key"))
    assert_fails(done, f"--out {out} does not end with the settings key")
    assert_nothing_written(out, tmp_path)


def test_demo_model_with_an_invalid_image_size(cli, tmp_path):
    out = tmp_path / "models" / "sd15-tiny"
    done = cli("build-demo-model", "--arch", "sd15", "--out", out, "--image-size", 40, "--no-progress")
    assert_fails(done, "image_size must be a positive multiple of 16, got 40")
    assert_nothing_written(out, tmp_path)


def test_cli_value_of_the_wrong_type(cli, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli("extract", "--model", "m", "--family", "sd15", "--layers", "legacy", "--dataset-kind", "spair",
            "--dataset-root", tmp_path, "--out", tmp_path / "store", "--t", "fifty")
    assert exit_info.value.code == 2
    assert "argument --t: invalid int value: 'fifty'" in capsys.readouterr().err
    assert not (tmp_path / "store").exists()


# ---- feature caches ------------------------------------------------------------------------------------


def test_corrupted_feature_cache_shard(cli, spair_template, store, tmp_path):
    shard = sorted((store / "shards").rglob("*.safetensors"))[1]
    shard.write_bytes(shard.read_bytes()[:60])  # a shard cut short (full disk, copy interrupted)
    out = tmp_path / "out" / "nn_pck.csv"
    done = cli("pck-screen", "--store", store, "--dataset-root", spair_template, "--eval-size", 16, "--out", out)
    assert_fails(done, str(shard), "corrupted feature shard", "delete it and rerun the extraction")
    assert_nothing_written(out)


def test_corrupted_store_metadata(cli, spair_template, store, tmp_path):
    (store / "meta.json").write_text('{"key": "abc", "layers": {')
    out = tmp_path / "out" / "nn_pck.csv"
    done = cli("pck-screen", "--store", store, "--dataset-root", spair_template, "--eval-size", 16, "--out", out)
    assert_fails(done, f"{store}/meta.json", "unreadable store metadata")
    assert_nothing_written(out)


def test_incomplete_store_is_not_trained_on(cli, spair_template, store, tmp_path):
    (store / "complete.json").unlink()  # an extraction that never finished
    out = tmp_path / "run"
    done = cli("corr-train", "--train-store", store, "--val-store", store, "--dataset-root", spair_template,
               "--feature-size", 4, "--eval-size", 16, "--device", "cpu", "--out-dir", out)
    assert_fails(done, f"feature store {store} is not complete (no complete.json)")
    assert_nothing_written(out, tmp_path)


def test_checkpoint_named_in_evaluations_cannot_leave_the_run(cli, spair_template, store, tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "evaluations.csv").write_text("step,pck_img@0.10,checkpoint\n2,50.0,../../../elsewhere/step_000002.safetensors\n")
    out = tmp_path / "out" / "trained-heldout.csv"
    done = cli("corr-evaluate", "--method", "trained", "--protocol", "heldout", "--store", store, "--run", run,
               "--dataset-root", spair_template, "--feature-size", 4, "--eval-size", 16, "--device", "cpu", "--out", out)
    assert_fails(done, f"checkpoint named in {run}/evaluations.csv", "'../../../elsewhere/step_000002.safetensors'",
                 "climbs out with '..'")
    assert_nothing_written(out)


def test_store_folder_reused_with_other_settings(store):
    with pytest.raises(DataError, match=rf"{re.escape(str(store))}/meta.json: store was made with other settings"):
        FeatureStore.create(store, {"case": "something else"}, layers=STORE_LAYERS)


def test_merge_argument_without_a_label(cli, tmp_path):
    out = tmp_path / "out" / "table.csv"
    done = cli("pck-table", str(tmp_path / "nn_pck.csv"), "--out", out)
    assert_fails(done, "expected LABEL=CSV", "nn_pck.csv")
    assert_nothing_written(out)


# ---- the Snakemake config ------------------------------------------------------------------------------


def demo_config() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def validation_errors(config: dict) -> list[str]:
    """Every schema violation of ``config`` (snakemake's validate, which the workflow runs, reports only the
    first; all of them are listed so a case does not depend on the order of the others)."""
    import copy

    from jsonschema import Draft202012Validator
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    schema = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
    with pytest.raises(WorkflowError):
        validate(copy.deepcopy(config), str(REPO / "config" / "schema.yaml"))
    return [error.message for error in Draft202012Validator(schema).iter_errors(config)]


def test_snakemake_refuses_a_config_value_of_the_wrong_type(tmp_path):
    if not SNAKEMAKE.is_file():
        pytest.skip("snakemake is not installed next to this Python")
    config = demo_config()
    config["extraction"]["t"] = "fifty"
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    done = subprocess.run([str(SNAKEMAKE), "-n", "--cores", "1", "--snakefile", str(REPO / "Snakefile"), "-d", str(tmp_path)],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"})
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "'fifty' is not of type 'integer'" in output and "['extraction']['t']" in output
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("case, change, needle", [
    ("timestep above the schedule", lambda c: c["extraction"].__setitem__("t", 1001),
     "1001 is greater than the maximum of 1000"),
    ("misspelt model key", lambda c: c["models"]["sd15-tiny"].__setitem__("sorce", "x"),
     "'sorce' was unexpected"),
    ("unknown dataset kind", lambda c: c["datasets"]["spair"].__setitem__("kind", "coco"),
     "'coco' is not one of"),
    ("model name that leaves results/", lambda c: c["models"].__setitem__("../../outside", c["models"]["sd15-tiny"]),
     "'../../outside' does not match"),
    ("layer set given as a path", lambda c: c["correspondence"].__setitem__("layer_set", "../../../etc/x"),
     "'../../../etc/x' does not match"),
    ("missing required section", lambda c: c.pop("extraction"), "'extraction' is a required property"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_schema_rejects_a_bad_config(case, change, needle):
    config = demo_config()
    change(config)
    errors = validation_errors(config)
    assert any(needle in message for message in errors), errors


def test_schema_accepts_the_shipped_configs():
    from snakemake.utils import validate

    from diffact.workflow import read_profile

    for path in sorted((REPO / "config").glob("*.yaml")):
        if path.name != "schema.yaml":  # a derived profile (`base:`) is validated as snakemake sees it: merged
            config = read_profile(path) if "base" in yaml.safe_load(path.read_text()) else yaml.safe_load(path.read_text())
            validate(config, str(REPO / "config" / "schema.yaml"))


# ---- safety: paths, temporary files, deserialisation -----------------------------------------------------


@pytest.mark.parametrize("part", ["../x.jpg", "a/../../x.jpg", "/etc/passwd", "..\\x.jpg", "C:\\data\\x.jpg", "",
                                  "a\x00b"])
def test_checked_join_refuses_parts_that_leave_the_root(tmp_path, part):
    with pytest.raises(DataError, match="must be a relative path inside"):
        checked_join(tmp_path, "cat", part, what="image name")


def test_checked_join_keeps_relative_names_and_can_raise_config_errors(tmp_path):
    assert checked_join(tmp_path, "cat", "a/b.jpg") == tmp_path / "cat" / "a" / "b.jpg"
    assert checked_join(tmp_path, "x..y.jpg") == tmp_path / "x..y.jpg"  # dots inside a name are fine
    with pytest.raises(ConfigError, match="layer set '../x'"):
        checked_join(tmp_path, "../x", what="layer set", error=ConfigError)


KILLED_WRITER = """
import os, signal, sys
from diffact.utils.io import atomic_dir, atomic_path
folder = sys.argv[1]
model, table = atomic_dir(os.path.join(folder, "model")), atomic_path(os.path.join(folder, "table.csv"))
(model.__enter__() / "config.json").write_text("{}")     # a model folder being saved
table.__enter__().write_text("half a ta")                # a table being written
os.kill(os.getpid(), signal.SIGKILL)                     # no cleanup can run
"""


def test_leftovers_of_killed_writers_are_removed_and_live_ones_kept(tmp_path):
    subprocess.run([sys.executable, "-c", KILLED_WRITER, str(tmp_path)], check=False)
    leftovers = sorted(tmp_path.iterdir())
    assert len(leftovers) == 2 and all(p.name.startswith((".model.", ".table.")) for p in leftovers), leftovers
    remote = tmp_path / re.sub(r"\.[^.]+-(\d+)\.", r".otherhost-\1.", leftovers[1].name)  # same pid, other host
    shutil.copy(leftovers[1], remote)
    user_file = tmp_path / ".notes.part.csv"  # not the writers' pattern
    user_file.write_text("x")
    with atomic_path(tmp_path / "live.csv") as live:  # this process's first write here removes the leftovers
        live.write_text("being written")
        assert not any(p.exists() for p in leftovers)
        assert remove_stale_parts(tmp_path) == [] and live.exists()  # a live writer's file is kept
    assert remote.exists() and user_file.exists() and (tmp_path / "live.csv").read_text() == "being written"
    assert not (tmp_path / "model").exists() and not (tmp_path / "table.csv").exists()


def test_atomic_writes_leave_nothing_behind_on_failure(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "table.csv") as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "model") as tmp:
            (tmp / "config.json").write_text("{}")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_layer_set_name_cannot_point_outside_config_layers(cli, tiny_pipeline_dirs, tmp_path):
    outside = tmp_path / "elsewhere" / "evil.yaml"
    outside.parent.mkdir()
    outside.write_text("name: evil\nfamily: sd15\nlayers: [up-level1-upsampler-out]\n")
    relative = os.path.relpath(outside.with_suffix(""), REPO / "config" / "layers" / "sd15")
    done = cli("layers", "--model", tiny_pipeline_dirs["sd15"], "--set", relative, "--family", "sd15")
    assert_fails(done, relative)


SOURCE_DIRS = ("src", "workflow", "notebooks", "scripts", "benchmarks")
UNSAFE = {
    "eval() of text": re.compile(r"(?<![\w.])eval\("),
    "exec() of text": re.compile(r"(?<![\w.])exec\("),
    "pickle": re.compile(r"\bimport pickle\b|\bpickle\.loads?\(|\bcloudpickle\b|\bjoblib\.load\("),
    "yaml.load without SafeLoader": re.compile(r"yaml\.(load|load_all|unsafe_load)\((?![^)]*SafeLoader)"),
    "np.load with pickles": re.compile(r"allow_pickle\s*=\s*True"),
    "torch.load without weights_only=True": re.compile(r"torch\.load\((?![^)]*weights_only\s*=\s*True)"),
}


def test_no_unsafe_deserialisation_or_eval_in_the_code():
    """Configs and user files are data: nothing is eval'd, unpickled, or torch.load'ed without weights_only.
    (Third-party loaders we call use safe formats: diffusers/transformers read safetensors, and fall back
    to ``torch.load(weights_only=True)`` for .bin files.)"""
    found = []
    for folder in SOURCE_DIRS:
        for path in sorted((REPO / folder).rglob("*")):
            if path.suffix not in (".py", ".smk") and path.name != "Snakefile":
                continue
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                code = line.split("#", 1)[0]
                found += [f"{path.relative_to(REPO)}:{number}: {what}" for what, rx in UNSAFE.items() if rx.search(code)]
    assert not found, "\n".join(found)
