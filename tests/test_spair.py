"""SPair-71k layout: loader, validation, subsets, the demo builder, image helpers and the CLI."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffact.cli import main
from diffact.data.demo_spair import apply_homography, build_demo_spair
from diffact.data.images import load_image_tensor, load_rgb, to_model_tensor
from diffact.data.spair import (
    DHF_SUBSET_COUNTS,
    SPairDataset,
    SPairPair,
    check_spair_root,
    read_pair_annotation,
    subset_file_candidates,
    subset_keypoint_count,
    subset_pairs,
)
from diffact.utils.errors import ConfigError, DataError

# ------------------------------------------------------------------------------------------------
# A tiny tree in the real layout, with real SPair field names (and some of its extra fields).
# ------------------------------------------------------------------------------------------------

IMAGES = {("cat", "2008_000001"): (40, 30), ("cat", "2008_000002"): (50, 20), ("dog", "2009_000003"): (32, 32), ("dog", "2009_000004"): (24, 36)}
PAIRS = {
    "test": [
        ("000001-2008_000001-2008_000002:cat", "cat", "2008_000001", "2008_000002", [[1, 2], [39, 29], [20, 15]], [[3, 4], [49, 19], [25, 10]]),
        ("000002-2009_000003-2009_000004:dog", "dog", "2009_000003", "2009_000004", [[5, 5], [31, 0]], [[6, 7], [23, 35]]),
    ],
    "val": [("000003-2008_000002-2008_000001:cat", "cat", "2008_000002", "2008_000001", [[3, 4]], [[1, 2]])],
    "trn": [("000004-2009_000004-2009_000003:dog", "dog", "2009_000004", "2009_000003", [[6, 7]], [[5, 5]])],
}


def pair_json(category, src, trg, src_kps, trg_kps) -> dict:
    (sw, sh), (tw, th) = IMAGES[(category, src)], IMAGES[(category, trg)]
    return {
        "pair_id": 1,
        "src_imname": f"{src}.jpg",
        "trg_imname": f"{trg}.jpg",
        "src_imsize": [sw, sh, 3],
        "trg_imsize": [tw, th, 3],
        "src_bndbox": [0, 0, sw - 1, sh - 1],
        "trg_bndbox": [1, 1, tw - 2, th - 3],
        "category": category,
        "src_pose": "Left",
        "trg_pose": "Right",
        "src_kps": src_kps,
        "trg_kps": trg_kps,
        "kps_ids": [str(i) for i in range(len(src_kps))],
        "mirror": 0,
        "viewpoint_variation": 1,
    }


def write_tiny_spair(root: Path) -> Path:
    for (category, stem), (w, h) in IMAGES.items():
        path = root / "JPEGImages" / category / f"{stem}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(path, quality=90)
    for split, pairs in PAIRS.items():
        folder = root / "PairAnnotation" / split
        folder.mkdir(parents=True)
        for name, *fields in pairs:
            (folder / f"{name}.json").write_text(json.dumps(pair_json(*fields)))
        # Layout lists the pairs in reverse order: the loader must keep the official order.
        layout = root / "Layout" / "large" / f"{split}.txt"
        layout.parent.mkdir(parents=True, exist_ok=True)
        layout.write_text("".join(f"{p[0]}\n" for p in reversed(pairs)))
    return root


def edit_pair(root: Path, name: str, **changes) -> Path:
    path = root / "PairAnnotation" / "test" / f"{name}.json"
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            del data[key]
        else:
            data[key] = value
    path.write_text(json.dumps(data))
    return path


CAT_PAIR = PAIRS["test"][0][0]


@pytest.fixture
def tiny(tmp_path) -> Path:
    return write_tiny_spair(tmp_path / "SPair-71k")


# ------------------------------------------------------------------------------------------------
# Loader
# ------------------------------------------------------------------------------------------------


def test_loader_reads_the_real_layout(tiny):
    data = SPairDataset(tiny, "test")
    assert len(data) == 2 and data.split == "test"
    assert [p.name for p in data] == [PAIRS["test"][1][0], CAT_PAIR]  # Layout order
    assert data.categories == ["cat", "dog"]
    assert data.n_keypoints == 5
    pair = data[1]
    assert pair.category == "cat"
    assert pair.src_path == tiny / "JPEGImages" / "cat" / "2008_000001.jpg" and pair.trg_path.is_file()
    assert pair.src_size == (40, 30) and pair.trg_size == (50, 20)
    assert pair.src_kps.dtype == np.float64 and pair.src_kps.shape == (3, 2)
    np.testing.assert_array_equal(pair.trg_kps, [[3, 4], [49, 19], [25, 10]])
    np.testing.assert_array_equal(pair.trg_bbox, [1, 1, 48, 17])
    assert len(SPairDataset(tiny, "val")) == 1 and len(SPairDataset(tiny, "trn")) == 1


def test_loader_lists_the_folder_when_layout_is_absent(tiny):
    (tiny / "Layout" / "large" / "test.txt").unlink()
    assert [p.name for p in SPairDataset(tiny, "test")] == sorted(p[0] for p in PAIRS["test"])


def test_missing_field_names_file_and_field(tiny):
    path = edit_pair(tiny, CAT_PAIR, trg_kps=None)
    with pytest.raises(DataError) as err:
        SPairDataset(tiny, "test")
    assert str(path) in str(err.value) and "'trg_kps'" in str(err.value) and "missing" in str(err.value)


def test_keypoint_count_mismatch(tiny):
    edit_pair(tiny, CAT_PAIR, trg_kps=[[3, 4]])
    with pytest.raises(DataError, match=r"count mismatch: 'src_kps' has 3 but 'trg_kps' has 1"):
        SPairDataset(tiny, "test")


def test_keypoint_outside_image_is_named(tiny):
    path = edit_pair(tiny, CAT_PAIR, src_kps=[[1, 2], [45, 29], [20, 15]])  # x = 45 > W = 40
    with pytest.raises(DataError) as err:
        read_pair_annotation(path)
    assert str(path) in str(err.value) and "'src_kps'[1] = [45, 29] lies outside the 40×30 image" in str(err.value)


def test_missing_keypoints_are_allowed_and_become_nan(tiny):
    path = edit_pair(tiny, CAT_PAIR, trg_kps=[[3, 4], None, [-1, -1]])
    pair = read_pair_annotation(path)
    assert np.isnan(pair.trg_kps[1]).all() and pair.trg_kps[2].tolist() == [-1, -1]


def test_missing_image_root_and_split(tiny, tmp_path):
    (tiny / "JPEGImages" / "cat" / "2008_000002.jpg").unlink()
    with pytest.raises(DataError, match=r"2008_000002\.jpg \(field 'trg_imname'\) does not exist"):
        SPairDataset(tiny, "test")
    with pytest.raises(DataError, match="does not exist"):
        SPairDataset(tmp_path / "nowhere", "test")
    (tiny / "PairAnnotation" / "val" / f"{PAIRS['val'][0][0]}.json").unlink()
    (tiny / "PairAnnotation" / "val").rmdir()
    with pytest.raises(DataError, match=r"PairAnnotation/val/ under"):
        SPairDataset(tiny, "val")
    with pytest.raises(ConfigError, match="unknown SPair split"):
        SPairDataset(tiny, "train")


def test_check_spair_root_lists_every_problem(tiny):
    assert check_spair_root(tiny) == []
    edit_pair(tiny, CAT_PAIR, trg_kps=None)
    edit_pair(tiny, PAIRS["test"][1][0], src_imsize=[33, 32, 3])  # declared size ≠ the JPEG's 32×32
    (tiny / "JPEGImages" / "cat" / "2008_000002.jpg").unlink()  # used by the test and val cat pairs
    with open(tiny / "Layout" / "large" / "trn.txt", "a") as f:
        f.write("000099-a-b:dog\n")
    problems = check_spair_root(tiny)
    text = "\n".join(problems)
    assert "'trg_kps' is missing" in text
    assert "field 'src_imsize' says 33×32" in text
    # The missing image is reported for both pairs that use it, including the one missing 'trg_kps'.
    assert "test/000001-2008_000001-2008_000002:cat.json: image file" in text
    assert "val/000003-2008_000002-2008_000001:cat.json: image file" in text
    assert "lists pair '000099-a-b:dog'" in text
    assert len(problems) == 5
    assert check_spair_root(tiny / "missing") == [f"SPair root {tiny / 'missing'} does not exist"]


# ------------------------------------------------------------------------------------------------
# Subsets (DHF's val-360 / test-360: 20 pairs per category)
# ------------------------------------------------------------------------------------------------


def fake_pairs(counts: dict[str, int]) -> list[SPairPair]:
    kps, box = np.zeros((1, 2)), np.array([0.0, 0.0, 1.0, 1.0])
    return [
        SPairPair(f"{i:06d}-a-b:{c}", c, Path("a"), Path("b"), kps, kps, box, box, (2, 2), (2, 2))
        for c, n in counts.items()
        for i in range(n)
    ]


def test_subset_pairs_is_seeded_sorted_and_capped_per_category():
    pairs = fake_pairs({"dog": 25, "cat": 5, "bus": 20})
    chosen = subset_pairs(pairs, per_category=20, seed=0)
    cats = [p.category for p in chosen]
    assert cats == ["bus"] * 20 + ["cat"] * 5 + ["dog"] * 20  # sorted categories, small ones kept whole
    dogs = [p.name for p in chosen if p.category == "dog"]
    assert dogs == sorted(dogs) and len(set(dogs)) == 20
    assert [p.name for p in subset_pairs(pairs, 20, seed=0)] == [p.name for p in chosen]  # deterministic
    assert [p.name for p in subset_pairs(list(reversed(pairs)), 20, seed=0)] == [p.name for p in chosen]  # order-free
    assert [p.name for p in subset_pairs(pairs, 20, seed=1)] != [p.name for p in chosen]


DHF_RECORD = {
    "source_path": "2008_000001.jpg", "target_path": "2008_000002.jpg", "category": "cat",
    "source_points": [[1, 2], [20, 15]], "target_points": [[3, 4], [25, 10]],
    "source_bounding_box": [0, 0, 39, 29], "target_bounding_box": [1, 1, 48, 17],
    "source_pose": "Left", "target_pose": "Right", "mirror": 0, "viewpoint_variation": 1,
}


def test_named_subset_reads_the_file(tiny):
    with pytest.raises(ConfigError, match="belongs to split 'val'"):
        SPairDataset(tiny, "test", subset="val-360")
    # DHF's file format: records with source_path / target_path / *_points / *_bounding_box.
    record = dict(DHF_RECORD)
    (tiny / "spair_71k_val-360.json").write_text(json.dumps([record]))
    data = SPairDataset(tiny, subset="val-360", official_counts=False)  # 1 pair, not DHF's 360
    assert data.split == "val" and len(data) == 1 and data.subset_label == "val-360"
    assert data[0].trg_size == (50, 20)  # read from the image header
    np.testing.assert_array_equal(data[0].src_kps, [[1, 2], [20, 15]])
    # A subset file may also list pair names of the split.
    names = tiny / "my_subset.json"
    names.write_text(json.dumps([CAT_PAIR]))
    assert [p.name for p in SPairDataset(tiny, "test", subset=str(names))] == [CAT_PAIR]
    del record["target_points"]
    (tiny / "spair_71k_val-360.json").write_text(json.dumps([record]))
    with pytest.raises(DataError, match=r"spair_71k_val-360\.json record 0: field 'target_points' is missing"):
        SPairDataset(tiny, subset="val-360", official_counts=False)


def test_a_missing_dhf_subset_file_stops_the_run_naming_every_place_looked(tiny):
    with pytest.raises(DataError) as err:
        SPairDataset(tiny, subset="test-360")
    message = str(err.value)
    assert "\n" not in message and "subset_fallback: draw" in message
    for place in (tiny, tiny / "annotations", tiny / "JPEGImages"):
        assert str(place / "spair_71k_test-360.json") in message
    assert [str(p) for p in subset_file_candidates(tiny, "test-360")] == [
        str(place / "spair_71k_test-360.json") for place in (tiny, tiny / "annotations", tiny / "JPEGImages")]
    with pytest.raises(ConfigError, match="unknown subset_fallback 'maybe'"):
        SPairDataset(tiny, subset="test-360", subset_fallback="maybe")


def test_a_drawn_subset_is_logged_and_labelled(tiny, caplog):
    with caplog.at_level(logging.WARNING, logger="diffact.data.spair"):
        data = SPairDataset(tiny, subset="test-360", subset_fallback="draw")
    assert len(data) == 2  # fewer than 20 per category: all pairs
    assert data.drawn and data.subset_label == "test-360-drawn"
    assert any("test-360" in r.getMessage() and "drawing 20 pairs per category" in r.getMessage() for r in caplog.records)
    # A name with no upstream file (the paper profile's test-90) is drawn by rule, and says so too.
    assert SPairDataset(tiny, subset="test-90").subset_label == "test-90-drawn"
    assert SPairDataset(tiny, "test").subset_label == "all"


def test_dhf_subset_file_is_also_found_under_jpegimages(tiny):
    (tiny / "JPEGImages" / "spair_71k_val-360.json").write_text(json.dumps([DHF_RECORD]))
    data = SPairDataset(tiny, subset="val-360", official_counts=False)
    assert len(data) == 1 and not data.drawn and data.subset_label == "val-360"
    assert data[0].annotation.startswith(str(tiny / "JPEGImages" / "spair_71k_val-360.json"))


def dhf_file(pairs: int, keypoints: int) -> list[dict]:
    """A DHF-format subset file of ``pairs`` records of the tiny tree's cat pair holding ``keypoints`` in all."""
    per_pair, extra = divmod(keypoints, pairs)
    records = []
    for i in range(pairs):
        n = per_pair + (i < extra)
        points = [[1 + j, 2] for j in range(n)]  # inside both images (40×30 and 50×20)
        records.append({**DHF_RECORD, "source_points": points, "target_points": points})
    return records


@pytest.mark.parametrize("subset, pairs, keypoints", [("val-360", 360, 2615), ("test-360", 360, 2529)])
def test_dhf_subset_counts_are_checked_unless_official_counts_is_off(tiny, subset, pairs, keypoints):
    from diffact.data.registry import spair_problems

    path = tiny / "annotations" / f"spair_71k_{subset}.json"
    path.parent.mkdir()
    path.write_text(json.dumps(dhf_file(pairs, keypoints)))
    assert DHF_SUBSET_COUNTS[subset] == (pairs, keypoints)
    data = SPairDataset(tiny, subset=subset)
    assert len(data) == pairs and subset_keypoint_count(data) == keypoints
    strict = {"subset_fallback": "error", "official_counts": True}
    assert spair_problems(str(tiny), ["val", "test"], {subset: strict}) == ([], [])

    for wrong in ((pairs, keypoints - 1), (pairs - 1, keypoints)):
        path.write_text(json.dumps(dhf_file(*wrong)))
        expected = (rf"{re.escape(str(path))}: {subset} holds {wrong[0]} pairs and {wrong[1]:,} keypoints, "
                    rf"DHF's file {pairs} pairs and {keypoints:,} keypoints")
        with pytest.raises(DataError, match=expected):
            SPairDataset(tiny, subset=subset)
        assert len(SPairDataset(tiny, subset=subset, official_counts=False)) == wrong[0]  # fixture trees
        problems, _ = spair_problems(str(tiny), ["val", "test"], {subset: strict})
        assert len(problems) == 1 and re.search(expected, problems[0])
        assert spair_problems(str(tiny), ["val", "test"], {subset: {**strict, "official_counts": False}}) == ([], [])


def test_check_data_reports_a_missing_dhf_subset_file_unless_it_may_be_drawn(tiny):
    from diffact.checks import Report, check_datasets

    config = {"datasets": {"spair": {"kind": "spair", "root": str(tiny), "split": "test"},
                           "spair-val": {"kind": "spair", "root": str(tiny), "split": "val", "subset": "val-360"},
                           "spair-screen": {"kind": "spair", "root": str(tiny), "split": "test", "subset": "test-90"}},
              "correspondence": {"table1": {"datasets": {"trn": "spair", "val": "spair-val", "test": "spair"}}}}
    report = Report()
    check_datasets(config, report)
    # Table 1's test-360 (the default test_subset) on `spair` and the entry's own val-360 are both missing.
    assert len(report.problems) == 2, report.problems
    for subset in ("test-360", "val-360"):
        assert any(f"SPair subset {subset}: DHF's spair_71k_{subset}.json is in none of" in p and
                   str(tiny / "JPEGImages" / f"spair_71k_{subset}.json") in p for p in report.problems)
    assert report.notes == [f"dataset spair, spair-val, spair-screen (spair, {tiny}): subset test-90: no "
                            f"spair_71k_test-90.json (looked in {tiny}, {tiny / 'annotations'}, {tiny / 'JPEGImages'}); "
                            "a deterministic draw of 5 pairs per category stands in for it, labelled test-90-drawn"]
    for name in ("spair", "spair-val"):
        config["datasets"][name]["subset_fallback"] = "draw"
    report = Report()
    check_datasets(config, report)
    assert report.problems == [] and len(report.notes) == 3


# ------------------------------------------------------------------------------------------------
# Demo builder
# ------------------------------------------------------------------------------------------------

SMALL = dict(n_images=3, pairs_per_image=3, image_size=48, max_keypoints=6)


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_demo_builder_writes_a_valid_consistent_tree(tmp_path):
    root = build_demo_spair(tmp_path / "demo", seed=3, **SMALL)
    assert check_spair_root(root) == []
    manifest = json.loads((root / "demo_manifest.json").read_text())
    total = 0
    for split in ("test", "val", "trn"):
        data = SPairDataset(root, split)
        assert len(data) == 3 and data.categories == ["astronaut", "chelsea", "coffee"]
        for pair in data:
            total += 1
            assert 3 <= pair.n_keypoints <= 6
            assert max(pair.src_size) == 48 and max(pair.trg_size) == 48
            assert load_rgb(pair.trg_path).shape == (pair.trg_size[1], pair.trg_size[0], 3)
            # The target keypoints are the recorded warp of the source keypoints (stored to 1/100 px).
            warp = np.array(manifest["pairs"][pair.name]["source_to_target"])
            np.testing.assert_allclose(apply_homography(warp, pair.src_kps), pair.trg_kps, atol=0.006)
            w, h = pair.trg_size
            assert (pair.trg_kps >= 0).all() and (pair.trg_kps[:, 0] <= w - 1).all() and (pair.trg_kps[:, 1] <= h - 1).all()
            x1, y1, x2, y2 = pair.trg_bbox
            assert 0 <= x1 < x2 <= w - 1 and 0 <= y1 < y2 <= h - 1
    assert total == 9 and len(manifest["pairs"]) == 9


def test_demo_identity_warp_keeps_keypoints_and_pixels(tmp_path):
    root = build_demo_spair(tmp_path / "demo", seed=0, warp_strength=0, photometric_strength=0, **SMALL)
    for pair in SPairDataset(root, "test"):
        np.testing.assert_array_equal(pair.src_kps, pair.trg_kps)
        np.testing.assert_array_equal(pair.src_bbox, pair.trg_bbox)
        assert pair.src_size == pair.trg_size
        assert pair.src_path.read_bytes() == pair.trg_path.read_bytes()  # same rendering, same JPEG


def test_demo_builder_is_deterministic(tmp_path):
    first = tree_bytes(build_demo_spair(tmp_path / "a", seed=5, **SMALL))
    second = tree_bytes(build_demo_spair(tmp_path / "b", seed=5, **SMALL))
    assert first == second
    other = tree_bytes(build_demo_spair(tmp_path / "c", seed=6, **SMALL))
    assert other.keys() == first.keys() and other != first


def test_demo_builder_rejects_bad_arguments(tmp_path):
    with pytest.raises(ConfigError, match="unknown categories"):
        build_demo_spair(tmp_path / "x", categories=["unicorn"])
    with pytest.raises(ConfigError, match="min_keypoints"):
        build_demo_spair(tmp_path / "x", min_keypoints=9, max_keypoints=8)
    assert not (tmp_path / "x").exists()


# ------------------------------------------------------------------------------------------------
# Image helpers
# ------------------------------------------------------------------------------------------------


def test_image_loading_errors_and_model_tensor(tmp_path):
    good = tmp_path / "good.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(good, quality=90)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[:300])
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    with pytest.raises(DataError, match="truncated.jpg is truncated or corrupt"):
        load_rgb(truncated)
    with pytest.raises(DataError, match="notes.jpg is not a readable image"):
        load_rgb(text)
    with pytest.raises(DataError, match="does not exist"):
        load_rgb(tmp_path / "absent.jpg")

    tensor, size = load_image_tensor(good, 32)
    assert size == (60, 40) and tuple(tensor.shape) == (3, 32, 32)
    assert -1.0 <= float(tensor.min()) and float(tensor.max()) <= 1.0
    flat = to_model_tensor(np.stack([np.zeros((4, 6)), np.full((4, 6), 255)], -1)[..., [0, 1, 1]].astype(np.uint8), 8)
    assert float(flat[0].max()) == -1.0 and float(flat[1].min()) == 1.0  # black → -1, white → 1


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------


def test_cli_make_and_check(tmp_path, capsys):
    out = tmp_path / "cli-demo"
    assert main(["make-demo-spair", "--out", str(out), "--seed", "2", "--n-images", "3", "--pairs-per-image", "3", "--image-size", "40"]) == 0
    assert main(["check-spair", "--root", str(out)]) == 0
    assert "valid SPair-71k root" in capsys.readouterr().out
    victim = next((out / "PairAnnotation" / "test").glob("*.json"))
    victim.write_text("{ not json")
    assert main(["check-spair", "--root", str(out)]) == 1
    assert "not valid JSON" in capsys.readouterr().out
    assert main(["make-demo-spair", "--out", str(tmp_path / "bad"), "--categories", "unicorn"]) == 2
