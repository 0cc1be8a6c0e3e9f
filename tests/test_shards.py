"""Sharded extraction (issue #10): N jobs fill one store, a merge finalises it."""

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from diffact import workflow as wf
from diffact.data.registry import folder_images
from diffact.extract.pipeline import ExtractionSettings
from diffact.extract.run import extract_to_store, merge_shards, parse_shard, shard_images
from diffact.models.loading import load_pipeline
from diffact.utils.errors import ConfigError, DataError

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["up-level1-repeat1-vit-block0-cross-q", "up-level3-repeat0-vit-block0-self-k"]
SETTINGS = {"k": 1}


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_shard_split_is_a_round_robin_of_batches():
    images = [(f"img_{i}", Path(f"{i}.jpg")) for i in range(5)]
    assert [i for i, _ in shard_images(images, (1, 2))] == ["img_0", "img_2", "img_4"]
    assert [i for i, _ in shard_images(images, (2, 2))] == ["img_1", "img_3"]
    assert shard_images(images, (3, 3)) == [images[2]]
    # batches of 2: [0 1] [2 3] [4] → shard 1 gets batches 0 and 2, shard 2 batch 1
    assert [i for i, _ in shard_images(images, (1, 2), batch_size=2)] == ["img_0", "img_1", "img_4"]
    assert [i for i, _ in shard_images(images, (2, 2), batch_size=2)] == ["img_2", "img_3"]
    assert parse_shard("2/4") == (2, 4)
    for bad in ("0/2", "3/2", "2", "a/b"):
        with pytest.raises(ConfigError, match="expected I/N"):
            parse_shard(bad)


def test_two_shards_and_a_merge_equal_one_run(tiny_pipeline_dirs, image_folder, tmp_path):
    pipe = load_pipeline(str(tiny_pipeline_dirs["sd15"]), device="cpu")
    images = folder_images(image_folder)
    settings = ExtractionSettings(image_size=32, prompt="a photo")
    # batches of 2 (the batch composition changes float rounding, so the split must keep the batches)
    whole = extract_to_store(pipe, LAYERS, images, tmp_path / "whole", SETTINGS, settings, batch_size=2)
    out = tmp_path / "sharded"
    second = extract_to_store(pipe, LAYERS, images, out, SETTINGS, settings, shard=(2, 2), batch_size=2)  # any order
    assert second.image_ids() == ["img_2"] and not (out / "complete.json").exists()
    with pytest.raises(DataError, match=r"2 of 3 images have no shard file \(shard 1/2: img_0, img_1\)"):
        merge_shards(out, images, SETTINGS, shards=2, batch_size=2)
    extract_to_store(pipe, LAYERS, images, out, SETTINGS, settings, shard=(1, 2), batch_size=2)
    merge_shards(out, images, SETTINGS, shards=2, batch_size=2)
    assert _files(out) == _files(whole.root)  # meta.json, complete.json and every shard, byte for byte
    with pytest.raises(DataError, match="other settings"):
        merge_shards(out, images, {"k": 2})


def test_merge_names_missing_images_and_never_finalises(tmp_path):
    images = [(f"img_{i}", Path(f"{i}.jpg")) for i in range(3)]
    with pytest.raises(DataError, match="no shard job has written this store yet.*img_0, img_1, img_2"):
        merge_shards(tmp_path / "empty", images, SETTINGS, shards=2)
    assert not (tmp_path / "empty" / "complete.json").exists()


def test_cli_shards_with_receipts_then_merge(tiny_pipeline_dirs, image_folder, tmp_path, cli):
    import json

    args = ["--model", tiny_pipeline_dirs["sd15"], "--family", "sd15", "--layers", ",".join(LAYERS),
            "--dataset-kind", "folder", "--dataset-root", image_folder, "--image-size", "32", "--out", tmp_path / "s"]
    done = cli("extract", *args, "--shard", "1/2", "--receipt", tmp_path / "parts" / "1-of-2.json")
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "parts" / "1-of-2.json").read_text())["image_ids"] == ["img_0", "img_2"]
    missing = cli("extract-merge", *args, "--shards", "2")
    assert missing.returncode == 2 and "shard 2/2: img_1" in missing.stderr
    assert cli("extract", *args, "--shard", "2/2").returncode == 0
    assert cli("extract-merge", *args, "--shards", "2").returncode == 0
    assert json.loads((tmp_path / "s" / "complete.json").read_text())["image_ids"] == ["img_0", "img_1", "img_2"]
    assert cli("extract", *args, "--receipt", tmp_path / "r.json").returncode == 2  # a receipt needs --shard


def test_a_shard_without_images_writes_its_receipt_without_loading_the_model(image_folder, tmp_path, monkeypatch):
    """3 images, 4 shards: shard 4 has no batch. Loading a full-size model for nothing costs minutes per job."""
    import json

    from diffact.cli import main
    from diffact.models import loading

    def no_model(*args, **kwargs):
        raise AssertionError("an empty shard loaded the model")

    monkeypatch.setattr(loading, "load_pipeline", no_model)
    receipt = tmp_path / "parts" / "4-of-4.json"
    args = ["extract", "--model", str(tmp_path / "no-such-model"), "--family", "sd15", "--layers", ",".join(LAYERS),
            "--dataset-kind", "folder", "--dataset-root", str(image_folder), "--image-size", "32",
            "--out", str(tmp_path / "s"), "--shard", "4/4", "--receipt", str(receipt)]
    assert main(args) == 0
    assert json.loads(receipt.read_text())["image_ids"] == []


def test_workflow_plans_shard_jobs_and_a_merge(tmp_path):
    from diffact import workflow as wf

    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    target = wf.store_done(config, "spair", "sd15-tiny", "screen")
    assert wf.shard_receipts(config, "spair", "sd15-tiny", "screen", "s") == []
    config["extraction"]["shards"] = 3
    assert wf.store_done(config, "spair", "sd15-tiny", "screen") == target  # sharding does not change the store
    assert wf.shard_receipts(config, "spair", "sd15-tiny", "screen", "s") == [
        "s.parts/1-of-3.json", "s.parts/2-of-3.json", "s.parts/3-of-3.json"]

    def dry_run():
        (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
        done = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-p", "--forceall", "--nolock", "--cores",
                               "2", "--configfile", str(tmp_path / "config.yaml"), "--", target],
                              cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout + done.stderr

    plan = dry_run()
    assert plan.count("--shard ") == 3 and "--shard 3/3 --receipt" in plan
    assert "extract-merge --shards 3" in plan
    # One store's own count (extraction.shards_by_store) over an unsharded default.
    config["extraction"].update(shards=1, shards_by_store={"spair/sd15-tiny/screen": 2})
    plan = dry_run()
    assert plan.count("--shard ") == 2 and "--shard 2/2 --receipt" in plan and "extract-merge --shards 2" in plan


def test_per_store_shard_counts_override_the_default_and_pick_the_extract_jobs_stage():
    """`extraction.shards_by_store` (the rehearsal shards one small store): that store gets its own shard count,
    receipts and a merge-only `extract` job; the others keep `extraction.shards`."""
    config = {"extraction": {"shards": 1, "shards_by_store": {"horse21/sd15/legacy": 2}},
              "datasets": {"horse21": {"kind": "ddpmseg", "root": "x"}}, "models": {"sd15": {"family": "sd15"}},
              "resources": {"default": {"threads": 1, "mem_mb": 1000},
                            "extract": {"threads": 2, "mem_mb": 9000, "slurm_partition": "gpu"}}}
    assert wf.extraction_shards(config) == 1
    assert wf.extraction_shards(config, "horse21", "sd15", "legacy") == 2
    assert wf.extraction_shards(config, "horse21", "sd15", "practical") == 1
    assert wf.shard_receipts(config, "horse21", "sd15", "legacy", "s") == ["s.parts/1-of-2.json", "s.parts/2-of-2.json"]
    assert wf.shard_receipts(config, "horse21", "sd15", "practical", "s") == []
    assert wf.extract_stage(config, "horse21", "sd15", "legacy") == "default"
    assert wf.extract_stage(config, "horse21", "sd15", "practical") == "extract"
    resources = wf.resources_by_stage(config, ("default", "extract"),
                                      lambda w: wf.extract_stage(config, w.dataset, w.model, w.layerset))
    merge, single = SimpleNamespace(dataset="horse21", model="sd15", layerset="legacy"), \
        SimpleNamespace(dataset="horse21", model="sd15", layerset="practical")
    assert {k: f(merge) for k, f in resources.items()}["mem_mb"] == 1000
    assert {k: f(single) for k, f in resources.items()} == {"mem_mb": 9000, "slurm_partition": "gpu",
                                                            "gpu": 0, "runtime": resources["runtime"](single)}
    assert resources["slurm_partition"](merge) is None  # unset for the merge job
    wf.check_references(config)  # the store names resolve


@pytest.mark.parametrize("key, message", [
    ("horse21/sd15", "a store is <dataset>/<model>/<layer set>, got 'horse21/sd15'"),
    ("horse22/sd15/legacy", "no dataset 'horse22'"),
    ("horse21/sd16/legacy", "no model 'sd16'"),
    ("horse21/sd15/legacyy", "no layer set 'legacyy' for model sd15"),
])
def test_a_misnamed_per_store_shard_entry_is_refused_with_the_name(key, message):
    config = {"extraction": {"shards_by_store": {key: 2}}, "datasets": {"horse21": {"kind": "ddpmseg", "root": "x"}},
              "models": {"sd15": {"family": "sd15"}}}
    with pytest.raises(ConfigError, match=message):
        wf.check_references(config)
