"""Config → Table 1 grid (diffact.workflow.correspondence), and that the demo config's declared
'unavailable' sets are exactly those the demo U-Nets cannot resolve."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from diffact.workflow.correspondence import find_entry, result_runs, split_dataset, table1_entries, table1_settings
from diffact.utils.errors import ConfigError

CONFIG = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "config.yaml").read_text())


def test_demo_grid_has_every_model_and_set_and_says_what_cannot_run():
    entries = {(e.name, e.layer_set): e for e in table1_entries(CONFIG)}
    t1 = CONFIG["correspondence"]["table1"]
    singles = [(m, s) for m in t1["models"] for s in t1["layer_sets"]]
    assert set(singles) <= set(entries)
    declared = {(m, s) for m, sets in t1.get("unavailable", {}).items() for s in sets}
    for key in singles:
        assert entries[key].runs == (key not in declared)
    combo = entries[("xl-t", "combined")]
    assert combo.n_models == 3 and combo.paper_method == "Ours-XL-t"
    # A combination that uses an unavailable part cannot run either, and says which part.
    assert combo.runs == (not any(part in declared for part in combo.parts))
    # The demo U-Nets have the paper's block counts: every set and the combination run (#16 point 8).
    assert not declared and combo.runs
    runs = result_runs(CONFIG)
    assert len(runs) == sum(e.runs for e in entries.values()) * len(t1["methods"]) * len(t1["protocols"])
    assert split_dataset(CONFIG, "trn") == t1["datasets"]["trn"]


def test_a_combination_with_an_unavailable_part_says_which_part():
    config = copy.deepcopy(CONFIG)
    config["correspondence"]["table1"]["unavailable"] = {"sdxl-tiny": {"practical": "no block 7"}}
    combo = find_entry(config, "xl-t", "combined")
    assert not combo.runs and "sdxl-tiny/practical" in combo.unavailable
    assert not find_entry(config, "sdxl-tiny", "practical").runs and find_entry(config, "sdxl-tiny", "legacy").runs


def test_substitutes_and_config_errors():
    config = copy.deepcopy(CONFIG)
    t1 = config["correspondence"]["table1"]
    t1["unavailable"] = {}
    t1["substitutes"] = {"sdxl-tiny": {"practical": "figure"}}  # any existing set file of the family
    entry = find_entry(config, "sdxl-tiny", "practical")
    assert entry.runs and entry.parts == (("sdxl-tiny", "figure"),) and "'figure' instead of 'practical'" in entry.note
    t1["substitutes"] = {"sdxl-tiny": {"practical": "no-such-set"}}
    with pytest.raises(ConfigError, match="no-such-set"):
        table1_entries(config)
    assert "attention maps" in find_entry(CONFIG, "sd15-tiny", "amalgamation").note  # the paper adds up_cross maps
    bad = copy.deepcopy(CONFIG)
    bad["correspondence"]["table1"]["datasets"]["val"] = "spair"  # a test-split dataset
    with pytest.raises(ConfigError, match="split 'val'"):
        table1_settings(bad)
    bad = copy.deepcopy(CONFIG)
    bad["correspondence"]["table1"]["models"] = ["sd99"]
    with pytest.raises(ConfigError, match="sd99"):
        table1_settings(bad)


def test_declared_unavailable_sets_are_exactly_the_ones_the_demo_unets_lack():
    from conftest import assert_declared_unavailable_matches

    t1 = CONFIG["correspondence"]["table1"]
    assert_declared_unavailable_matches(CONFIG, t1, t1["models"], t1["layer_sets"])


def test_table1_scores_the_subset_its_stores_hold():
    """The paper profile's Table 1 test store holds only test-360's images (issue #19: 1,800 → ≤ 720 images per
    store), so a test_subset other than the store's subset is refused at planning, naming both keys."""
    paper = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "paper.yaml").read_text())
    t1 = table1_settings(paper)
    for role, key in (("val", "val_subset"), ("test", "test_subset")):
        assert paper["datasets"][t1["datasets"][role]]["subset"] == t1[key]
    bad = copy.deepcopy(paper)
    bad["correspondence"]["table1"]["test_subset"] = "all"
    with pytest.raises(ConfigError, match=r"test_subset = 'all', but datasets.spair.subset = 'test-360'"):
        table1_settings(bad)


def test_stream_noise_plans_no_trn_or_val_store():
    """noise: stream (the paper profile): corr_train, the NN on val and the heldout numbers get each model's extract
    arguments instead of stores, so Table 1 plans no store. The demo keeps its draws, commands unchanged."""
    from diffact.workflow import correspondence as corr

    paper = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "paper.yaml").read_text())
    assert table1_settings(paper)["noise"] == "stream"
    for role in ("trn", "val"):
        assert corr.role_datasets(paper, role) == [] and corr.entry_stores(paper, "xl-t", "combined", role) == []
    train = corr.draw_store_args(paper, "--train-store", "xl-t", "combined", "trn")
    assert train.count("--train-extract ") == 3 and "--train-store" not in train and "--split trn" in train
    assert corr.eval_stores(paper, "sd15", "legacy", "nn", "paper") == []
    source = corr.eval_source_args(paper, "sd15", "legacy", "nn", "paper", [])
    assert source.startswith("--extract ") and "--split val" in source and source.endswith("--seed 0")
    # heldout streams the test pairs too, both methods with the same draws; trained + paper reads the training log
    for method in ("nn", "trained"):
        assert corr.eval_stores(paper, "sd15", "legacy", method, "heldout") == []
        assert "--split test" in corr.eval_source_args(paper, "sd15", "legacy", method, "heldout", [])
    assert corr.role_datasets(paper, "test") == []
    assert corr.eval_source_args(paper, "sd15", "legacy", "trained", "paper", []) == ""

    assert table1_settings(CONFIG)["noise"] == "draws"
    draws = CONFIG["correspondence"]["table1"]["noise_draws"]
    assert corr.draw_store_args(CONFIG, "--train-store", "sd15-tiny", "legacy", "trn").count(",") == draws - 1
    assert corr.eval_source_args(CONFIG, "sd15-tiny", "legacy", "nn", "paper", ["v/complete.json"]) == "--store v"
    assert corr.stream_model_inputs(CONFIG, "sd15-tiny", "legacy") == []
