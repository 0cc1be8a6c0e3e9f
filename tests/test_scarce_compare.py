"""Ranking per resolution, paper merge, composition and the Table 3 helper (diffact.analysis.compare)."""

import numpy as np
import pandas as pd
import pytest

from diffact.analysis.compare import (
    PRACTICAL_CHANNELS, compose_generic, compose_specific, fixed_selection, generic_vs_specific, paper_reference,
    rank_agreement, rank_per_resolution, resolution_of, scores_from_screens,
)
from diffact.data.reference import paper_tables_4_6

# Channels per resolution of the paper models (docs/paper.md §2.3): activations at a level have the level's width.
LEVEL_CHANNELS = {"sdxl": {"up-level0": 1280, "up-level1": 640}, "sd15": {"up-level1": 1280, "up-level2": 640,
                                                                          "up-level3": 320}}


def _paper_scores(model):
    ref = paper_reference(model)
    scores = ref.rename(columns={"paper_simple": "simple", "paper_complex": "complex"})[["activation", "simple", "complex"]]
    channels = {a: LEVEL_CHANNELS[model][resolution_of(a)] for a in scores["activation"]}
    return scores, channels


def test_reference_csv_is_complete():
    raw = paper_tables_4_6()
    assert len(raw) == 96 and raw["table"].value_counts().to_dict() == {4: 43, 5: 20, 6: 33}
    assert len(paper_reference("sdxl")) == 63 and len(paper_reference("pgv2")) == 63
    sd15 = paper_reference("sd15")
    assert len(sd15) == 33 and sd15["paper_simple"].notna().all()
    best = paper_reference("pgv2").sort_values("paper_complex").iloc[-1]
    assert best["activation"] == "up-level0-repeat0-vit-block5-out" and best["paper_complex"] == 49.77


def test_resolution_of():
    assert resolution_of("up-level1-repeat0-vit-block0-cross-q") == "up-level1"
    assert resolution_of("up-level0-upsampler-out") == "up-level0"
    assert resolution_of("down-level2-repeat1-res-out") == "down-level2"
    assert resolution_of("mid-vit-out") == "mid" and resolution_of("unet-out") == "other"


def test_rank_per_resolution_with_paper_values_beside():
    scores = pd.DataFrame({
        "activation": ["up-level0-repeat0-res-out", "up-level0-repeat0-vit-out", "up-level1-repeat0-res-out",
                       "up-level0-upsampler-out", "up-level1-repeat9-res-out"],
        "simple": [50.0, 55.0, 40.0, 52.0, 45.0],
        "complex": [30.0, 30.0, 20.0, 25.0, 25.0],
    })
    ranked = rank_per_resolution(scores, paper_reference("sdxl"))
    assert ranked["resolution"].tolist() == ["up-level0"] * 3 + ["up-level1"] * 2  # grouped, forward order kept
    row = ranked.set_index("activation")
    assert row.loc["up-level0-repeat0-vit-out", "rank_simple"] == 1
    assert row.loc["up-level0-upsampler-out", "rank_simple"] == 2
    assert row.loc["up-level0-repeat0-res-out", "rank_complex"] == 1  # tie 30 = 30 shares rank 1
    assert row.loc["up-level0-upsampler-out", "rank_complex"] == 3
    assert row.loc["up-level0-repeat0-res-out", "paper_simple"] == 53.49
    assert row.loc["up-level0-repeat0-res-out", "paper_rank_simple"] == 34  # among the paper's 43 up-level0 rows
    assert np.isnan(row.loc["up-level1-repeat9-res-out", "paper_simple"])  # no such activation in the paper


def test_rank_agreement_is_spearman_over_matched_rows():
    ranked = pd.DataFrame({"resolution": ["r"] * 4, "simple": [1.0, 2.0, 3.0, 4.0], "paper_simple": [10, 30, 20, 40],
                           "complex": [1.0, 2.0, 3.0, np.nan], "paper_complex": [3.0, 2.0, 1.0, 0.0]})
    agreement = rank_agreement(ranked).set_index("scene")
    # ranks (1,2,3,4) vs (1,3,2,4): d² = 0+1+1+0 = 2 → ρ = 1 − 6·2/(4·15) = 0.8
    assert agreement.loc["simple", "spearman"] == pytest.approx(0.8)
    assert agreement.loc["complex", "matched"] == 3 and agreement.loc["complex", "spearman"] == pytest.approx(-1.0)


def test_composition_on_the_paper_tables_gives_the_papers_sets():
    scores, channels = _paper_scores("sd15")
    sd15 = compose_generic(scores, channels, budget=3520)
    assert sd15["activation"].tolist() == [  # config_15_practical = Ours-v1.5 (paper App. B.1)
        "up-level1-repeat1-vit-block0-cross-q", "up-level1-repeat2-res-out",
        "up-level2-repeat1-vit-block0-cross-q", "up-level3-repeat0-vit-block0-self-k"]
    assert sd15["channels"].sum() == PRACTICAL_CHANNELS["sd15"]
    scores, channels = _paper_scores("sdxl")
    xl = compose_generic(scores, channels, budget=3840)
    assert sorted(xl["activation"]) == sorted([  # config_xl_practical = Ours-XL (paper App. B.2)
        "up-level0-repeat0-vit-block7-out", "up-level0-repeat0-vit-block5-out",
        "up-level1-repeat0-vit-block0-cross-q", "up-level1-repeat0-vit-block0-out"])
    assert xl.set_index("activation").loc["up-level1-repeat0-vit-block0-cross-q", "reason"] == "best complex+simple"


def test_specific_set_uses_only_the_simple_ranking_within_the_same_budget():
    scores, channels = _paper_scores("sdxl")
    specific = compose_specific(scores, channels, budget=3840, scene="simple")
    assert specific["activation"].tolist() == [
        "up-level0-repeat0-vit-block7-out", "up-level0-repeat0-vit-block3-out",  # tie 58.95: later first
        "up-level1-repeat0-vit-block0-cross-q", "up-level1-repeat0-res-out"]
    assert specific["channels"].sum() == 3840


def test_budget_limits_the_composition():
    scores, channels = _paper_scores("sd15")
    small = compose_generic(scores, channels, budget=1500, resolutions=["up-level2", "up-level3"])
    assert small["channels"].sum() <= 1500
    assert small["activation"].iloc[0] == "up-level2-repeat1-vit-block0-cross-q"


def test_generic_vs_specific_table():
    results = pd.DataFrame({"setting": ["generic", "generic", "specific", "specific"],
                            "scene": ["simple", "complex", "simple", "complex"],
                            "miou_mean": [60.0, 40.0, 61.0, 38.0]})
    table = generic_vs_specific(results).set_index("setting")
    assert table.loc["specific - generic", "simple"] == pytest.approx(1.0)
    assert table.loc["specific - generic", "complex"] == pytest.approx(-2.0)
    assert table.loc["specific - generic", "paper_complex"] == pytest.approx(45.41 - 47.55)
    assert table.loc["generic", "paper_simple"] == 63.34


def test_table3_puts_the_papers_generic_beside_both_generic_rows():
    results = pd.DataFrame({"setting": ["specific", "specific", "paper-generic", "paper-generic", "generic", "generic"],
                            "scene": ["simple", "complex"] * 3, "miou_mean": [61.0, 38.0, 59.0, 41.0, 60.0, 40.0]})
    table = generic_vs_specific(results)
    assert table["setting"].tolist() == ["generic", "paper-generic", "specific", "specific - generic"]
    rows = table.set_index("setting")
    assert rows.loc["paper-generic", ["simple", "paper_simple", "paper_complex"]].tolist() == [59.0, 63.34, 47.55]
    assert rows.loc["specific - generic", "simple"] == pytest.approx(1.0)  # the delta stays against our generic


def test_fixed_selection_keeps_the_set_as_named():
    scores = pd.DataFrame({"activation": ["a", "b"], "simple": [1.0, 2.0], "complex": [3.0, 4.0]})
    rows = fixed_selection(scores, ["b", "c"], {"b": 8, "c": 4}, reason="paper")
    assert rows["activation"].tolist() == ["b", "c"] and rows["channels"].tolist() == [8, 4]
    assert rows["simple"].iloc[0] == 2.0 and np.isnan(rows["complex"].iloc[1])
    with pytest.raises(KeyError, match="d"):
        fixed_selection(scores, ["d"], {}, reason="paper")


def test_scores_from_screens_joins_on_activation():
    simple = pd.DataFrame({"activation": ["a", "b"], "miou_mean": [1.0, 2.0], "miou_std": [0.1, 0.2],
                           "channels": [4, 8]})
    complex_ = pd.DataFrame({"activation": ["b", "c"], "miou_mean": [3.0, 4.0], "miou_std": [0.3, 0.4],
                             "channels": [8, 2]})
    scores = scores_from_screens(simple, complex_)
    assert scores["activation"].tolist() == ["a", "b", "c"]
    assert scores.set_index("activation").loc["b", ["simple", "complex", "complex_std"]].tolist() == [2.0, 3.0, 0.3]
    assert np.isnan(scores.set_index("activation").loc["a", "complex"])
