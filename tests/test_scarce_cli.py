"""The label-scarce CLI end to end on a tiny demo dataset with label-derived synthetic features."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from diffact.cli import main
from diffact.data.ddpmseg import load_label, open_ddpmseg
from diffact.extract.store import FeatureStore


@pytest.fixture(autouse=True)
def _restore_threads():
    """``--threads`` sets torch's global thread count; give other test modules theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("scarce-cli")
    assert main(["make-demo-seg", "--kind", "simple", "--out", str(root / "simple"), "--size", "32",
                 "--train", "3", "--test", "2", "--seed", "1"]) == 0
    dataset = open_ddpmseg(root / "simple")
    store = FeatureStore.create(root / "store", {"test": "cli"})
    gen = torch.Generator().manual_seed(0)
    proj = torch.randn(dataset.num_classes, 8, generator=gen)
    for item in dataset.images():
        label = torch.from_numpy(load_label(item.label_path).astype(np.int64))
        good = torch.einsum("hwk,kc->chw", torch.nn.functional.one_hot(label, dataset.num_classes).float(), proj)
        store.write(item.id, {  # a fine informative layer and a coarse uninformative one
            "up-level1-repeat0-vit-block0-out": good + 0.2 * torch.randn(good.shape, generator=gen),
            "up-level0-repeat0-res-out": torch.randn(4, 8, 8, generator=gen),
        })
    return root


def _protocol(demo, splits=2):
    return ["--store", str(demo / "store"), "--dataset", str(demo / "simple"), "--size", "16", "--splits",
            str(splits), "--models", "3", "--epochs", "10", "--threads", "1"]


def test_scarce_writes_one_row_per_split_and_a_summary(demo):
    out = demo / "scarce.csv"
    assert main(["scarce", *_protocol(demo), "--layers", "up-level1-repeat0-vit-block0-out", "--out", str(out)]) == 0
    rows = pd.read_csv(out)
    assert rows["split"].tolist() == [0, 1] and (rows["n_train"] == 3).all() and (rows["channels"] == 8).all()
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["miou_mean"] == pytest.approx(rows["miou"].mean(), abs=1e-3)
    # At 16² the head, ear and tail fall under the 20-pixel rule (never trained), so well below 100.
    assert summary["miou_mean"] > 25 and len(summary["class_iou"]) == 6


def test_screen_then_compare(demo):
    screen = demo / "screen.csv"
    assert main(["scarce-screen", *_protocol(demo, splits=1), "--out", str(screen)]) == 0
    table = pd.read_csv(screen)
    assert sorted(table["activation"]) == ["up-level0-repeat0-res-out", "up-level1-repeat0-vit-block0-out"]
    noise, good = table.set_index("activation").loc[sorted(table["activation"]), "miou_mean"].tolist()
    assert good > noise
    assert main(["scarce-screen", *_protocol(demo, splits=1), "--out", str(screen)]) == 0  # resumes: nothing recomputed
    assert pd.read_csv(screen)["miou_mean"].tolist() == table["miou_mean"].tolist()
    # other protocol settings (here the ensemble size) recompute every activation instead of mixing rows
    other = [*_protocol(demo, splits=1)]
    other[other.index("--models") + 1] = "2"
    assert main(["scarce-screen", *other, "--out", str(screen)]) == 0
    assert pd.read_csv(screen)["protocol"].str.contains("members=2 ").all()
    assert main(["scarce-screen", *_protocol(demo, splits=1), "--out", str(screen)]) == 0
    assert pd.read_csv(screen)["miou_mean"].tolist() == table["miou_mean"].tolist()  # deterministic
    ranking = demo / "ranking.csv"
    assert main(["scarce-compare", "--simple", str(screen), "--complex", str(screen), "--paper-model", "sdxl",
                 "--out", str(ranking), "--budget", "12"]) == 0
    ranked = pd.read_csv(ranking)
    assert ranked["paper_simple"].notna().all()  # both names exist in Tables 4/5
    composed = pd.read_csv(demo / "ranking-composition.csv")
    assert composed.groupby("set")["channels"].sum().to_dict() == {"generic": 12, "specific": 12}


def test_scarce_reads_several_stores_side_by_side(demo, tmp_path, capsys):
    """Ours-XL-t's path: two stores (labels sdxl, pgv2) holding layers of the same name, one --layers each."""
    out = tmp_path / "combined.csv"
    protocol = _protocol(demo, splits=1)[2:]  # without the single --store
    stores = ["--store", f"sdxl={demo / 'store'}", "--store", f"pgv2={demo / 'store'}"]
    assert main(["scarce", *stores, *protocol, "--layers", "up-level1-repeat0-vit-block0-out",
                 "--layers", "up-level0-repeat0-res-out,up-level1-repeat0-vit-block0-out", "--out", str(out)]) == 0
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["activation"] == ("sdxl:up-level1-repeat0-vit-block0-out+pgv2:up-level0-repeat0-res-out+"
                                     "pgv2:up-level1-repeat0-vit-block0-out")
    assert summary["channels"] == 8 + 4 + 8 and summary["upsample"] == "nearest-bilinear"
    assert summary["stores"] == [f"sdxl={demo / 'store'}", f"pgv2={demo / 'store'}"]
    capsys.readouterr()
    assert main(["scarce", *stores, *protocol, "--layers", "up-level1-repeat0-vit-block0-out", "--out", str(out)]) == 2
    assert "give one --layers per store" in capsys.readouterr().err


def _screen_csv(path, rows):
    pd.DataFrame(rows, columns=["activation", "miou_mean", "miou_std", "channels"]).to_csv(path, index=False)
    return path


def test_compare_lists_the_papers_fixed_generic_set_beside_the_composed_ones(tmp_path, capsys):
    """Table 3's paper-generic row: the named set's layers, channels from the store, even a layer the qualitative
    filter dropped from the screens (its scores are then empty), between the generic and specific rows."""
    screen = _screen_csv(tmp_path / "screen.csv", [["up-level0-repeat0-vit-block7-out", 50.0, 1.0, 8],
                                                     ["up-level1-repeat0-vit-block0-out", 40.0, 1.0, 4]])
    store = tmp_path / "complete.json"
    store.write_text(json.dumps({"layers": {"up-level0-repeat0-vit-block7-out": [8, 4, 4],
                                            "up-level1-repeat0-vit-block0-cross-q": [4, 8, 8],
                                            "up-level1-repeat0-vit-block0-out": [4, 8, 8]}}))
    fixed = "practical=up-level0-repeat0-vit-block7-out,up-level1-repeat0-vit-block0-cross-q"
    out = tmp_path / "rank.csv"
    assert main(["scarce-compare", "--simple", str(screen), "--complex", str(screen), "--out", str(out),
                 "--budget", "12", "--paper-generic", fixed, "--store-layers", str(store)]) == 0
    composed = pd.read_csv(tmp_path / "rank-composition.csv")
    assert list(dict.fromkeys(composed["set"])) == ["generic", "paper-generic", "specific"]
    paper = composed[composed["set"] == "paper-generic"].set_index("activation")
    assert paper.index.tolist() == ["up-level0-repeat0-vit-block7-out", "up-level1-repeat0-vit-block0-cross-q"]
    assert paper["channels"].tolist() == [8, 4]
    assert paper.at["up-level0-repeat0-vit-block7-out", "simple"] == 50.0
    assert np.isnan(paper.at["up-level1-repeat0-vit-block0-cross-q", "simple"])  # not screened: no score
    assert paper["reason"].iloc[0] == "the paper's practical set (fixed)"
    capsys.readouterr()
    # a set naming a layer the store lacks is one clear line, not a KeyError
    assert main(["scarce-compare", "--simple", str(screen), "--complex", str(screen), "--out", str(out),
                 "--budget", "12", "--paper-generic", "practical=up-level0-repeat0-vit-block5-out",
                 "--store-layers", str(store)]) == 2
    err = capsys.readouterr().err
    assert "up-level0-repeat0-vit-block5-out" in err and str(store) in err and "Traceback" not in err


def test_bad_input_is_a_clean_error(demo, capsys):
    assert main(["scarce", *_protocol(demo), "--layers", "nope", "--out", str(demo / "x.csv")]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["scarce", *_protocol(demo), "--layers", "up-level0-repeat0-res-out", "--pixel-rate", "2",
                 "--out", str(demo / "x.csv")]) == 2


# ---- options that read what a rule's command needs from files made upstream (no Python in the rule's shell) ----

def test_layers_from_csv_reads_the_rows_a_column_selects(tmp_path):
    from diffact.tasks.scarce.commands import layers_from_csv
    from diffact.utils.errors import ConfigError, DataError

    csv = tmp_path / "filter.csv"
    pd.DataFrame({"layer": ["a", "b", "c"], "kept": [True, False, True], "set": ["generic", "specific", "generic"]}
                 ).to_csv(csv, index=False)
    assert layers_from_csv(f"{csv}:layer:kept=True") == ["a", "c"]
    assert layers_from_csv(f"{csv}:layer:set=specific") == ["b"]
    assert layers_from_csv(f"{csv}:layer:set=none") == []
    with pytest.raises(ConfigError, match="expected CSV:COLUMN:WHERE=VALUE"):
        layers_from_csv(f"{csv}:layer")
    with pytest.raises(DataError, match="no column 'activation'"):
        layers_from_csv(f"{csv}:activation:kept=True")


def test_scarce_layers_all_and_from_csv(demo, tmp_path):
    """`--layers all` is every layer of its store (each store of a combined run), `--layers-from-csv` the rows a
    column selects: what the workflow's rules once computed with `$(python -c ...)` in their shell."""
    protocol = _protocol(demo, splits=1)[2:]
    out = tmp_path / "all.csv"
    stores = ["--store", f"sdxl={demo / 'store'}", "--store", f"pgv2={demo / 'store'}"]
    assert main(["scarce", *stores, *protocol, "--layers", "all", "--layers", "up-level0-repeat0-res-out",
                 "--out", str(out)]) == 0
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["activation"] == ("sdxl:up-level1-repeat0-vit-block0-out+sdxl:up-level0-repeat0-res-out+"
                                     "pgv2:up-level0-repeat0-res-out")
    composition = tmp_path / "composition.csv"
    pd.DataFrame({"activation": ["up-level0-repeat0-res-out", "up-level1-repeat0-vit-block0-out"],
                  "set": ["specific", "generic"]}).to_csv(composition, index=False)
    assert main(["scarce", *_protocol(demo, splits=1), "--layers-from-csv", f"{composition}:activation:set=generic",
                 "--out", str(out)]) == 0
    assert json.loads(out.with_suffix(".json").read_text())["activation"] == "up-level1-repeat0-vit-block0-out"
    screen = tmp_path / "screen.csv"
    assert main(["scarce-screen", *_protocol(demo, splits=1), "--layers-from-csv",
                 f"{composition}:activation:set=specific", "--out", str(screen)]) == 0
    assert pd.read_csv(screen)["activation"].tolist() == ["up-level0-repeat0-res-out"]


def test_compare_budget_from_store_is_the_stores_channel_total(tmp_path):
    from diffact.tasks.scarce.commands import store_channels
    from diffact.utils.errors import DataError

    screen = _screen_csv(tmp_path / "screen.csv", [["a", 50.0, 1.0, 8], ["b", 40.0, 1.0, 4], ["c", 30.0, 1.0, 4]])
    store = tmp_path / "complete.json"
    store.write_text(json.dumps({"layers": {"a": [8, 4, 4], "b": [4, 8, 8]}}))
    assert store_channels(str(store)) == 12
    for name, budget in (("by-number", ["--budget", "12"]), ("by-store", ["--budget-from-store", str(store)])):
        assert main(["scarce-compare", "--simple", str(screen), "--complex", str(screen), "--out",
                     str(tmp_path / f"{name}.csv"), *budget]) == 0
    assert (pd.read_csv(tmp_path / "by-number-composition.csv").equals(pd.read_csv(tmp_path / "by-store-composition.csv")))
    with pytest.raises(DataError, match="does not exist"):
        store_channels(str(tmp_path / "missing.json"))


@pytest.fixture(scope="module")
def screen_store(demo, tmp_path_factory):
    """Four activations of the demo dataset: three of 8 channels (trained side by side in one pass) and one of 4."""
    root = tmp_path_factory.mktemp("scarce-screen-store")
    dataset = open_ddpmseg(demo / "simple")
    store = FeatureStore.create(root / "store", {"test": "screen-per-pass"})
    gen = torch.Generator().manual_seed(1)
    for item in dataset.images():
        label = torch.from_numpy(load_label(item.label_path).astype(np.int64))
        onehot = torch.nn.functional.one_hot(label, dataset.num_classes).float()
        layers = {}
        for i, noise in enumerate((0.1, 0.5, 2.0)):
            good = torch.einsum("hwk,kc->chw", onehot, torch.randn(dataset.num_classes, 8, generator=gen))
            layers[f"up-level1-repeat{i}-vit-block0-out"] = good + noise * torch.randn(good.shape, generator=gen)
        layers["up-level0-repeat0-res-out"] = torch.randn(4, 8, 8, generator=gen)
        store.write(item.id, layers)
    return root / "store"


def test_a_screen_scores_several_activations_per_pass_with_the_results_of_one_at_a_time(demo, screen_store, tmp_path,
                                                                                         monkeypatch):
    """scarce-screen trains the ensembles of a pass's activations side by side (one stacked module per channel
    count and split); each activation's row is byte for byte the row it gets alone (--per-pass 1)."""
    import diffact.tasks.scarce.pipeline as pipeline

    calls = []
    train = pipeline.train_ensembles
    monkeypatch.setattr(pipeline, "train_ensembles", lambda streams, *a, **k: calls.append(len(streams)) or
                        train(streams, *a, **k))
    protocol = ["--store", str(screen_store), "--dataset", str(demo / "simple"), "--size", "16", "--splits", "2",
                "--models", "3", "--epochs", "6", "--threads", "1"]
    alone, together = tmp_path / "alone.csv", tmp_path / "together.csv"
    assert main(["scarce-screen", *protocol, "--per-pass", "1", "--out", str(alone)]) == 0
    assert calls == [1] * 8  # 4 activations x 2 splits, one at a time
    calls.clear()
    assert main(["scarce-screen", *protocol, "--out", str(together)]) == 0
    assert sorted(calls) == [1, 1, 3, 3]  # per split: the three 8-channel activations together, the other alone
    assert together.read_bytes() == alone.read_bytes()
    table = pd.read_csv(together).set_index("activation")
    assert len(table) == 4 and table["miou_splits"].nunique() == 4  # four different results, not one copied
    calls.clear()
    assert main(["scarce-screen", *protocol, "--buffer-mb", "0.04", "--out", str(tmp_path / "small.csv")]) == 0
    assert calls == [1] * 8  # one buffer of all training pixels (~28 kB) fits, two do not: one at a time
    assert (tmp_path / "small.csv").read_bytes() == alone.read_bytes()
