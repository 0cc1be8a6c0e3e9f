"""Shards record the code that wrote them (issue #16, point 9): a rerun after a change to the extraction code
re-extracts (``snakemake --forcerun extract`` used to find every shard present and keep the old features),
while an interrupted run of the same code resumes from its shards."""

import json
import logging
from pathlib import Path

import pytest
import torch

from diffact.data.registry import folder_images
from diffact.extract.pipeline import ExtractionSettings
from diffact.extract.run import extract_to_store, extraction_code, extraction_sources, merge_shards, source_digest
from diffact.extract.store import FeatureStore
from diffact.models.loading import load_pipeline
from diffact.utils.errors import DataError

LAYERS = ["up-level1-repeat1-vit-block0-cross-q", "up-level3-repeat0-vit-block0-self-k"]
SETTINGS = {"k": 1}
OLD_CODE = {"digest": "0123456789ab", "torch": "old", "diffusers": "old", "transformers": "old"}
NEW_CODE = {"digest": "ba9876543210", "torch": "new", "diffusers": "new", "transformers": "new"}


@pytest.fixture(scope="module")
def sd15(tiny_pipeline_dirs):
    return load_pipeline(str(tiny_pipeline_dirs["sd15"]), device="cpu")


def _extract(pipe, images, out, code, **kwargs):
    return extract_to_store(pipe, LAYERS, images, out, SETTINGS, ExtractionSettings(image_size=32, prompt="a photo"),
                            code=code, **kwargs)


def _forcerun(store: FeatureStore) -> None:
    """What `snakemake --forcerun extract` does before the job runs: remove the rule's output."""
    (store.root / "complete.json").unlink()


def test_a_rerun_by_other_code_re_extracts_every_shard_and_says_so(sd15, image_folder, tmp_path, caplog):
    images = folder_images(image_folder)
    fresh = _extract(sd15, images, tmp_path / "fresh", NEW_CODE)
    old = _extract(sd15, images, tmp_path / "store", OLD_CODE)
    # the old code's bug: its features for img_0 were wrong
    old.write("img_0", {name: torch.zeros(old.shape(name)) for name in LAYERS})
    _forcerun(old)
    with caplog.at_level(logging.WARNING, logger="diffact.extract.run"):
        rerun = _extract(sd15, images, tmp_path / "store", NEW_CODE)
    assert "3 of 3 shards were written by other extraction code" in caplog.text
    for image_id, _ in images:
        assert rerun.shard_code(image_id) == NEW_CODE["digest"]
        assert rerun.shard_path(image_id).read_bytes() == fresh.shard_path(image_id).read_bytes(), image_id
    assert json.loads((rerun.root / "meta.json").read_text())["code"] == NEW_CODE
    assert (rerun.root / "complete.json").is_file()


def test_an_interrupted_run_of_the_same_code_keeps_its_shards(sd15, image_folder, tmp_path, caplog):
    images = folder_images(image_folder)
    store = _extract(sd15, images[:2], tmp_path / "store", NEW_CODE)  # killed after two images
    written = {i: store.shard_path(i).stat().st_mtime_ns for i, _ in images[:2]}
    with caplog.at_level(logging.INFO, logger="diffact.extract.run"):
        resumed = _extract(sd15, images, tmp_path / "store", NEW_CODE)
    assert "3 images, 2 already extracted, 1 to do" in caplog.text and "other extraction code" not in caplog.text
    assert {i: resumed.shard_path(i).stat().st_mtime_ns for i in written} == written
    assert resumed.image_ids() == [i for i, _ in images]


def test_shards_written_before_shards_recorded_their_code_are_re_extracted(sd15, image_folder, tmp_path, caplog):
    images = folder_images(image_folder)[:1]
    reference = _extract(sd15, images, tmp_path / "reference", NEW_CODE)
    legacy = FeatureStore.create(tmp_path / "store", reference.settings)  # no code: as stores were written before
    legacy.write("img_0", {name: torch.zeros(reference.shape(name)) for name in LAYERS})
    assert legacy.shard_code("img_0") is None
    with caplog.at_level(logging.WARNING, logger="diffact.extract.run"):
        store = _extract(sd15, images, tmp_path / "store", NEW_CODE)
    assert "1 of 1 shards were written by other extraction code" in caplog.text
    assert store.shard_code("img_0") == NEW_CODE["digest"] and store.read_layer("img_0", LAYERS[0]).abs().sum() > 0


def test_a_merge_refuses_shards_written_by_other_code(sd15, image_folder, tmp_path):
    images = folder_images(image_folder)
    out = tmp_path / "store"
    _extract(sd15, images, out, OLD_CODE, shard=(1, 2))
    _extract(sd15, images, out, NEW_CODE, shard=(2, 2))
    with pytest.raises(DataError, match=r"2 of 3 shards were written by other extraction code .*img_0, img_2; "
                                        r"rerun the shard jobs \(snakemake --forcerun extract_shard\)"):
        merge_shards(out, images, SETTINGS, shards=2, code=NEW_CODE)
    assert not (out / "complete.json").exists()
    _extract(sd15, images, out, NEW_CODE, shard=(1, 2))
    merge_shards(out, images, SETTINGS, shards=2, code=NEW_CODE)
    assert (out / "complete.json").is_file()


def test_the_code_digest_follows_the_code_not_its_comments_or_docstrings(tmp_path):
    source = tmp_path / "extract.py"

    def digest(text):
        source.write_text(text)
        return source_digest([source], tmp_path)

    base = digest('"""Module."""\n\ndef f(x):\n    """Double."""\n    return 2 * x\n')
    assert digest('"""Other words."""\n# a comment\n\ndef f(x):\n\n    return 2 * x  # why\n') == base
    assert digest('"""Module."""\n\ndef f(x):\n    """Double."""\n    return 3 * x\n') != base


def test_extraction_code_covers_the_extraction_and_model_loading_and_names_versions():
    import diffact

    root = Path(diffact.__file__).parent
    names = {p.relative_to(root).as_posix() for p in extraction_sources(root)}
    assert {"extract/pipeline.py", "extract/hooks.py", "extract/store.py", "models/loading.py",
            "data/images.py", "utils/seeding.py"} <= names
    code = extraction_code()
    assert code == extraction_code() and len(code["digest"]) == 12
    assert code["torch"] == torch.__version__ and set(code) == {"digest", "torch", "diffusers", "transformers"}
