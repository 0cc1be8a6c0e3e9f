"""The qualitative filter reproduces the paper's filtered pools (Tables 4–6) from the candidate pools."""

import pytest

from diffact.analysis.filter import filter_report, qualitative_filter
from diffact.analysis.names import forward_sorted, parse_name
from diffact.data.reference import paper_tables_4_6
from diffact.extract.layersets import resolve_set
from diffact.utils.errors import ConfigError, LayerError

SDXL = "stabilityai/stable-diffusion-xl-base-1.0"
SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"


@pytest.fixture(scope="module")
def pools():
    from diffact.models.configs import build_unet, reference_unet_config

    return {family: resolve_set(build_unet(reference_unet_config(hub)), family, "pool")
            for family, hub in (("sdxl", SDXL), ("sd15", SD15))}


@pytest.fixture(scope="module")
def tables():
    return paper_tables_4_6()


def test_pool_sizes_are_the_papers(pools):
    assert len(pools["sdxl"]) == 279  # paper §5.1: 279 → 63 (−78%)
    assert len(pools["sd15"]) == 164  # docs/paper.md §2.3


def test_sdxl_pool_filters_to_tables_4_and_5(pools, tables):
    kept = qualitative_filter(pools["sdxl"], "sdxl")
    expected = tables[tables.table.isin([4, 5])].activation_id.tolist()
    assert len(kept) == 63
    assert kept == expected  # same members, and the tables list them in forward order


def test_sd15_pool_filters_to_table_6(pools, tables):
    kept = qualitative_filter(pools["sd15"], "sd15")
    expected = tables[tables.table == 6].activation_id.tolist()
    assert len(kept) == 33
    assert kept == expected


def test_reasons_name_the_rules(pools):
    report = {r["layer"]: r for r in filter_report(pools["sdxl"], "sdxl")}
    assert "P1" in report["down-level1-repeat0-res-out"]["reason"]
    assert "Fig 16" in report["up-level0-repeat0-vit-block0-ffn-inner"]["reason"]
    assert "rule b" in report["up-level0-repeat0-vit-block0-self-k"]["reason"]
    assert report["up-level1-repeat2-vit-block0-self-k"]["kept"]
    assert not report["up-level1-repeat2-vit-block0-self-q"]["kept"]  # SDXL keeps late self-k only
    assert not report["up-level2-repeat0-res-out"]["kept"]


def test_demo_unet_of_sd15_layout_gives_the_same_names(tiny_sd15_unet, pools):
    assert qualitative_filter(resolve_set(tiny_sd15_unet, "sd15", "pool"), "sd15") == qualitative_filter(pools["sd15"], "sd15")


def test_a_wider_window_admits_the_lowest_sd15_level(pools):
    kept = qualitative_filter(pools["sd15"], "sd15", n_up_levels=4)
    assert "up-level0-repeat0-res-out" in kept


def test_subset_candidates_use_the_layout_of_the_whole_pool(pools):
    subset = [n for n in pools["sd15"] if n.endswith("self-k")]
    assert qualitative_filter(subset, "sd15", layout_names=pools["sd15"]) == [
        n for n in qualitative_filter(pools["sd15"], "sd15") if n.endswith("self-k")]


def test_bad_input_raises_clear_errors(pools):
    with pytest.raises(ConfigError, match="family"):
        qualitative_filter(pools["sd15"], "flux")
    with pytest.raises(ConfigError, match="up-stage"):
        qualitative_filter(["down-level0-repeat0-res-out"], "sd15")
    with pytest.raises(LayerError, match="cannot parse"):
        parse_name("up-levelX-res-out")


def test_parse_name_parts():
    p = parse_name("up-level1-repeat2-vit-block0-self-k")
    assert (p.stage, p.level, p.repeat, p.block, p.kind) == ("up", 1, 2, 0, "self-k")
    assert parse_name("mid-vit-out").kind == "vit-out"
    assert parse_name("up-level0-repeat0-vit-block3-out").kind == "block-out"
    assert parse_name("unet-after-conv-in").stage == "unet"


def test_forward_key_restores_the_catalog_order(tiny_sd15_unet, tiny_sdxl_unet):
    from diffact.families.unet import walk_unet
    from diffact.models.control_unet import ControlConfig, ControlUNet, control_catalog

    for unet in (tiny_sd15_unet, tiny_sdxl_unet):
        names = [a.name for a in walk_unet(unet)]
        assert forward_sorted(sorted(names)) == names  # stores list layers alphabetically
    control = [n for n, _ in control_catalog(ControlUNet(ControlConfig()))]
    assert forward_sorted(sorted(control)) == control


def test_cli_writes_the_report_and_the_comparison_with_the_paper(tmp_path):
    import pandas as pd

    from diffact.cli import main

    out, compare = tmp_path / "sd15.csv", tmp_path / "sd15_vs_paper.csv"
    assert main(["qualitative-filter", "--model", SD15, "--family", "sd15", "--out", str(out),
                 "--compare-out", str(compare)]) == 0
    report, row = pd.read_csv(out), pd.read_csv(compare).iloc[0]
    assert len(report) == 164 and report["kept"].sum() == 33
    assert (row["kept"], row["paper_kept"], row["only_ours"], row["only_paper"], bool(row["identical"])) == (33, 33, 0, 0, True)


def test_cli_writes_the_kept_activations_as_a_layer_set(tmp_path):
    """``--set-out``: the file the label-scarce screens' filtered store is extracted from (issue #19): the kept
    activations in forward order, then ``--also-set``'s others (Ours-v1.5 is in SD1.5's filtered pool, so nothing
    is added for it; a set outside it adds its activations)."""
    import pandas as pd
    import yaml

    from diffact.cli import main
    from diffact.extract.layersets import load_set_spec

    out, layers = tmp_path / "sd15.csv", tmp_path / "filtered.yaml"
    assert main(["qualitative-filter", "--model", SD15, "--family", "sd15", "--out", str(out),
                 "--set-out", str(layers), "--also-set", "practical", "--also-set", "legacy"]) == 0
    kept = pd.read_csv(out).query("kept").layer.tolist()
    spec = yaml.safe_load(layers.read_text())
    legacy = load_set_spec("sd15", "legacy")["layers"]
    assert spec["layers"][:len(kept)] == kept and len(kept) == 33
    assert spec["layers"][len(kept):] == [n for n in legacy if n not in kept] != []
    assert set(load_set_spec("sd15", "practical")["layers"]) <= set(kept)
    assert (spec["name"], spec["family"]) == ("filtered", "sd15")
    assert main(["qualitative-filter", "--model", SD15, "--family", "sd15", "--out", str(out),
                 "--also-set", "legacy"]) == 2  # --also-set adds to a --set-out file
