"""diffact extract-group (issue #19 point 1): several stores of one model with one model load, each byte for byte
what `diffact extract` writes alone; an interrupted group resumes; the demo plans one job per model and layer set."""

import shlex
from pathlib import Path

import pytest
import yaml

from diffact import workflow as wf
from diffact.extract.commands import group_store_args
from diffact.utils.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
DEMO = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
LAYERS = "up-level1-repeat1-vit-block0-cross-q,up-level3-repeat0-vit-block0-self-k"


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _stores(model, images, out: Path) -> list[list[str]]:
    """Two stores of one model that differ in everything but the model load: layers, noise seed, image size."""
    common = ["--model", str(model), "--family", "sd15", "--dataset-kind", "folder", "--dataset-root", str(images),
              "--batch-size", "2", "--torch-threads", "1"]
    return [common + ["--layers", LAYERS, "--image-size", "32", "--out", str(out / "a")],
            common + ["--layers", "up-level2-repeat0-res-out", "--noise-seed", "3", "--image-size", "16",
                      "--prompt", "a cat", "--out", str(out / "b")]]


def _group(cli, stores):
    return cli("extract-group", *[arg for store in stores for arg in ("--store", shlex.join(store))])


@pytest.fixture
def separate(tiny_pipeline_dirs, image_folder, tmp_path, cli):
    """The two stores as two `diffact extract` jobs write them."""
    stores = _stores(tiny_pipeline_dirs["sd15"], image_folder, tmp_path / "separate")
    for store in stores:
        assert cli("extract", *store).returncode == 0
    return {name: _files(tmp_path / "separate" / name) for name in ("a", "b")}


def test_a_group_job_writes_the_bytes_of_separate_jobs(separate, tiny_pipeline_dirs, image_folder, tmp_path, cli):
    stores = _stores(tiny_pipeline_dirs["sd15"], image_folder, tmp_path / "group")
    done = _group(cli, stores)
    assert done.returncode == 0, done.stderr
    for name in ("a", "b"):
        assert _files(tmp_path / "group" / name) == separate[name]  # meta.json, complete.json, every shard


def test_an_interrupted_group_resumes_to_the_same_bytes(separate, tiny_pipeline_dirs, image_folder, tmp_path, cli,
                                                        monkeypatch):
    from diffact.extract.store import FeatureStore

    stores = _stores(tiny_pipeline_dirs["sd15"], image_folder, tmp_path / "group")
    write, written = FeatureStore.write, []

    def killed_after_four(self, *args, **kwargs):  # store a (3 images) whole, then one shard of store b
        if len(written) == 4:
            raise KeyboardInterrupt
        written.append(write(self, *args, **kwargs))

    monkeypatch.setattr(FeatureStore, "write", killed_after_four)
    with pytest.raises(KeyboardInterrupt):
        _group(cli, stores)
    monkeypatch.undo()
    assert (tmp_path / "group" / "a" / "complete.json").exists() and not (tmp_path / "group" / "b" / "complete.json").exists()
    (tmp_path / "group" / "a" / "complete.json").unlink()  # snakemake removes a rerun job's outputs first
    assert _group(cli, stores).returncode == 0
    for name in ("a", "b"):
        assert _files(tmp_path / "group" / name) == separate[name]


def test_a_group_with_nothing_to_extract_loads_no_model(tiny_pipeline_dirs, image_folder, tmp_path, cli, monkeypatch):
    import diffact.models.loading

    stores = _stores(tiny_pipeline_dirs["sd15"], image_folder, tmp_path / "group")
    assert _group(cli, stores).returncode == 0
    before = {name: _files(tmp_path / "group" / name) for name in ("a", "b")}
    (tmp_path / "group" / "b" / "complete.json").unlink()  # a: complete (skipped); b: every shard, not finalised

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(diffact.models.loading, "load_pipeline", no_load)
    done = _group(cli, stores)
    assert done.returncode == 0, done.stderr
    assert {name: _files(tmp_path / "group" / name) for name in ("a", "b")} == before


def test_a_bad_group_is_one_error_line(tiny_pipeline_dirs, image_folder, tmp_path, cli):
    a, b = _stores(tiny_pipeline_dirs["sd15"], image_folder, tmp_path)
    other_model = [str(tiny_pipeline_dirs["sdxl"]) if arg == str(tiny_pipeline_dirs["sd15"]) else arg for arg in b]
    cases = {"loads its model otherwise": [a, other_model],
             "unrecognized arguments: --shard": [a, b + ["--shard", "1/2"]],
             "is given twice": [a, a],
             "the following arguments are required: --out": [a, b[:-2]]}
    for message, stores in cases.items():
        done = _group(cli, stores)
        assert done.returncode == 2 and message in done.stderr, (message, done.stderr)
        assert [line for line in done.stderr.splitlines() if "error:" in line] == [
            line for line in done.stderr.splitlines() if line.startswith("diffact extract-group: error: ")]
    assert not (tmp_path / "a").exists()  # every store is checked before anything is written


# ---- the workflow's groups ------------------------------------------------------------------------------------

def test_the_demo_writes_every_store_in_one_job_per_model_and_layer_set():
    groups = wf.stores.extract_groups(DEMO)
    requested = {wf.store_done(DEMO, d, m, s) for d, m, s, _ in wf.stores.requested_stores(DEMO)}
    outputs = [f for group in groups for f in group.done_files(DEMO)]
    assert len(requested) == 52 and sorted(outputs) == sorted(requested)  # each store once, none left alone
    assert sorted((g.model, g.layer_set) for g in groups) == sorted(
        (m, s) for m in ("sd15-tiny", "sdxl-tiny") for s in ("legacy", "practical", "amalgamation", "screen"))
    for group in groups:  # never across layer sets (a set may be derived from another set's store)
        assert all(f"/{group.model}/{group.layer_set}-" in f for f in group.done_files(DEMO))
        texts = shlex.split(group.store_args(DEMO))[1::2]
        parsed = group_store_args(texts)  # one model load, the stores' own diffact extract arguments
        assert [p.out + "/complete.json" for p in parsed] == group.done_files(DEMO)
        assert all(p.check_key for p in parsed)
        dataset = group.datasets[0]
        assert texts[0].startswith(wf.extract_args(DEMO, dataset, group.model, group.layer_set) + " --out ")


def test_groups_are_opt_in_and_skip_sharded_and_lone_stores():
    assert wf.stores.extract_groups({**DEMO, "extraction": {**DEMO["extraction"], "group": "store"}}) == []
    assert wf.stores.extract_groups({k: v for k, v in DEMO.items() if k != "extraction"} | {"extraction": {
        k: v for k, v in DEMO["extraction"].items() if k != "group"}}) == []  # the default: one job per store
    sharded = {**DEMO, "extraction": {**DEMO["extraction"], "shards_by_store": {
        "seg-simple/sd15-tiny/screen": 2, "spair/sdxl-tiny/legacy": 2}}}
    groups = {g.rule: g for g in wf.stores.extract_groups(sharded)}
    assert "extract_group_sd15_tiny_screen" not in groups  # its other store, seg-complex's, is alone: `extract`
    assert "spair" not in groups["extract_group_sdxl_tiny_legacy"].datasets
    assert len(groups["extract_group_sdxl_tiny_legacy"].datasets) == 7
    # a dataset whose model runs in another dtype is another model load: another group
    other_dtype = {**DEMO, "datasets": {**DEMO["datasets"], "seg-complex": {**DEMO["datasets"]["seg-complex"],
                                                                           "extraction": {"dtype": "bfloat16"}}}}
    assert "extract_group_sd15_tiny_screen" not in {g.rule for g in wf.stores.extract_groups(other_dtype)}
    with pytest.raises(ConfigError, match="extraction.group"):
        wf.stores.extract_groups({**DEMO, "extraction": {**DEMO["extraction"], "group": "model"}})
