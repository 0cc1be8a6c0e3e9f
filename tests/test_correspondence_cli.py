"""End to end through the CLI on a tiny demo SPair tree and hand-made feature stores:
corr-train → corr-evaluate (nn/trained × paper/heldout) → corr-table1."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from diffact.cli import main
from diffact.data.demo_spair import build_demo_spair
from diffact.data.registry import dataset_images
from diffact.extract.store import FeatureStore
from diffact.tasks.correspondence.aggregation import load_checkpoint

LAYERS = {"low": (4, 4, 4), "high": (2, 8, 8)}  # two "activations" at different resolutions


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("corr")
    root = build_demo_spair(tmp / "spair", n_images=2, pairs_per_image=3, image_size=32, max_keypoints=5)
    stores = {}
    g = torch.Generator().manual_seed(0)
    for split in ("trn", "val", "test"):
        store = FeatureStore.create(tmp / f"store-{split}", {"split": split}, layers=LAYERS)
        ids = [image_id for image_id, _ in dataset_images("spair", root, split)]
        for image_id in ids:
            store.write(image_id, {n: torch.randn(*shape, generator=g) for n, shape in LAYERS.items()})
        store.finalize(ids)
        stores[split] = store.root
    return tmp, root, stores


def run_cli(*args):
    assert main([str(a) for a in args]) == 0


def test_train_evaluate_and_table(tiny_setup):
    tmp, root, stores = tiny_setup
    run = tmp / "run"
    grid = ["--feature-size", 8, "--eval-size", 16, "--device", "cpu"]
    # The demo tree has no DHF subset file: val-360 may only be drawn when asked for, and rows then say so.
    assert main([str(a) for a in ["corr-train", "--train-store", stores["trn"], "--val-store", stores["val"],
                                  "--dataset-root", root, "--val-subset", "val-360", *grid,
                                  "--out-dir", tmp / "refused"]]) == 2
    assert not (tmp / "refused").exists()
    run_cli("corr-train", "--train-store", stores["trn"], "--val-store", stores["val"], "--dataset-root", root,
            "--val-subset", "val-360", "--subset-fallback", "draw", *grid, "--epochs", 1, "--pairs-per-epoch", 6,
            "--eval-every", 2, "--seed", 0, "--out-dir", run)
    evaluations = pd.read_csv(run / "evaluations.csv")
    assert evaluations["step"].tolist() == [2, 4] and set(evaluations["split"]) == {"val"}
    assert set(evaluations["subset"]) == {"val-360-drawn"}
    assert evaluations["pck_img@0.10_per_image"].between(0, 100).all()  # per-image PCK beside the pooled one
    assert not {"seconds", "keypoints_per_s", "elapsed_s"} & set(evaluations.columns)  # wall clock: log only
    network, meta = load_checkpoint(run / "checkpoints" / evaluations["checkpoint"].iloc[0])
    assert network.in_channels == network.out_channels == 6 and meta["step"] == 2
    assert len(pd.read_csv(run / "train_log.csv")) == 6

    outputs = []
    labels = ["--entry", "sd15-tiny", "--layer-set", "legacy", "--models", "sd15-tiny", "--families", "sd15",
              "--extracted-sets", "legacy"]
    for method in ("nn", "trained"):
        for protocol in ("paper", "heldout"):
            split, subset = ("val", "val-360") if protocol == "paper" else ("test", "test-360")
            out = tmp / f"{method}-{protocol}.csv"
            run_cli("corr-evaluate", "--method", method, "--protocol", protocol, "--store", stores[split],
                    "--run", run, "--dataset-root", root, "--subset", subset, "--subset-fallback", "draw", *grid,
                    *labels, "--out", out)
            row = pd.read_csv(out).iloc[0]
            assert row["protocol"] == protocol and row["method"] == method and row["eval_split"] == split
            assert row["eval_subset"] == f"{subset}-drawn"
            assert 0 <= row["pck_img@0.10_per_image"] <= 100 and 0 <= row["pck_bbox@0.05_per_image"] <= 100
            outputs.append(out)
    paper = pd.read_csv(tmp / "trained-paper.csv").iloc[0]
    assert paper["pck_img@0.10"] == evaluations["pck_img@0.10"].max()  # max over checkpoints
    heldout = pd.read_csv(tmp / "trained-heldout.csv").iloc[0]
    assert heldout["step"] == int(evaluations.loc[evaluations["pck_img@0.10"].idxmax(), "step"])

    plan = [{"name": "sdxl-tiny", "layer_set": "practical", "parts": [["sdxl-tiny", "practical"]], "families": ["sdxl"],
             "unavailable": "sdxl-tiny/practical: no block7", "paper_method": ""}]
    table_path = tmp / "table1.csv"
    run_cli("corr-table1", *outputs, "--plan-json", json.dumps(plan), "--out", table_path)
    table = pd.read_csv(table_path)
    assert len(table) == 8 and "protocol" in table.columns
    ours = table[table["entry"] == "sd15-tiny"]
    assert set(ours["paper_method"]) == {"Legacy-v1.5"} and set(ours["paper_pck_img@0.10"]) == {75.14}
    missing = table[table["entry"] == "sdxl-tiny"]
    assert set(missing["status"]) == {"unavailable"} and missing["pck_img@0.10"].isna().all()
    assert missing["note"].str.contains("no block7").all() and set(missing["paper_method"]) == {"Ours-XL"}


def test_multi_model_conv_halves_the_width_and_store_mismatch_is_an_error(tiny_setup, capsys):
    tmp, root, stores = tiny_setup
    run = tmp / "run-multi"
    common = ["--dataset-root", root, "--subset-fallback", "draw", "--feature-size", 8, "--eval-size", 8,
              "--device", "cpu", "--epochs", 1, "--pairs-per-epoch", 3, "--eval-every", 2]
    run_cli("corr-train", "--train-store", stores["trn"], "--train-store", stores["trn"], "--val-store", stores["val"],
            "--val-store", stores["val"], *common, "--out-dir", run)
    network, _ = load_checkpoint(run / "checkpoints" / "step_000002.safetensors")
    assert (network.in_channels, network.out_channels) == (12, 6)  # two models: C → C // 2
    assert main([str(a) for a in ["corr-train", "--train-store", stores["trn"], "--train-store", stores["trn"],
                                  "--val-store", stores["val"], *common, "--out-dir", tmp / "bad"]]) == 2
    assert "one per model" in capsys.readouterr().err


def test_screening_reports_throughput(tiny_setup):
    from diffact.data.spair import SPairDataset
    from diffact.tasks.correspondence.screen import screen_store

    tmp, root, stores = tiny_setup
    table = screen_store(FeatureStore.open(stores["test"]), list(SPairDataset(root, "test")), eval_size=16)
    assert sorted(table["layer"]) == ["high", "low"]
    assert (table["keypoints_per_s"] > 0).all() and (table["seconds"] > 0).all()
    assert (table["keypoints_per_s"] * table["seconds"]).round().tolist() == table["n_keypoints"].tolist()


def _draw_store(tmp, root, split, draw, noise_seed):
    """A store of `split` whose values depend on the draw (as noise draws of one extraction would)."""
    store = FeatureStore.create(tmp / f"store-{split}-draw{draw}", {"split": split, "extraction": {"noise_seed": noise_seed}},
                                layers=LAYERS)
    g = torch.Generator().manual_seed(100 + draw)
    ids = [image_id for image_id, _ in dataset_images("spair", root, split)]
    for image_id in ids:
        store.write(image_id, {n: torch.randn(*shape, generator=g) for n, shape in LAYERS.items()})
    store.finalize(ids)
    return store.root


def test_noise_draws_are_sampled_per_visit_and_recorded(tiny_setup, capsys):
    """#16 point 3: with K stores per split (DIR,DIR,...), corr-train samples one draw per image and visit in
    training and validation alike, says so in run.json and in the Table 1 row, and gives other results than
    one draw; draws that are the same store, or counts that differ between models, are refused."""
    tmp, root, stores = tiny_setup
    draws = {split: [_draw_store(tmp, root, split, k, k) for k in range(3)] for split in ("trn", "val")}
    common = ["--dataset-root", root, "--subset-fallback", "draw", "--feature-size", 8, "--eval-size", 16,
              "--device", "cpu", "--epochs", 1, "--pairs-per-epoch", 12, "--eval-every", 4, "--seed", 0]

    def train(out, trn, val):
        run_cli("corr-train", "--train-store", ",".join(map(str, trn)), "--val-store", ",".join(map(str, val)),
                *common, "--out-dir", out)
        return json.loads((out / "run.json").read_text()), pd.read_csv(out / "evaluations.csv")

    record, evaluations = train(tmp / "run-draws", draws["trn"], draws["val"])
    assert (record["noise"], record["noise_draws"]) == ("draws", 3)
    visits = record["images_read_per_draw"]
    assert sum(visits["trn"]) == 2 * 12 and all(v > 0 for v in visits["trn"])  # two images per step
    assert all(v > 0 for v in visits["val"])  # validation reads draws too, not draw 0 only
    again, evaluations_again = train(tmp / "run-draws-again", draws["trn"], draws["val"])
    assert again["images_read_per_draw"] == visits and evaluations_again.equals(evaluations)  # seeded
    fixed, evaluations_fixed = train(tmp / "run-fixed", draws["trn"][:1], draws["val"][:1])
    assert (fixed["noise"], fixed["noise_draws"]) == ("fixed", 1)
    assert not evaluations_fixed["train_loss"].equals(evaluations["train_loss"])

    out = tmp / "trained-paper-draws.csv"
    run_cli("corr-evaluate", "--method", "trained", "--protocol", "paper", "--run", tmp / "run-draws",
            "--dataset-root", root, "--feature-size", 8, "--eval-size", 16, "--device", "cpu", "--out", out)
    row = pd.read_csv(out).iloc[0]
    assert (row["noise"], row["noise_draws"]) == ("draws", 3)

    same = ",".join([str(draws["trn"][0])] * 2)
    assert main([str(a) for a in ["corr-train", "--train-store", same, "--val-store", same, *common,
                                  "--out-dir", tmp / "bad-same"]]) == 2
    assert "are not different draws" in capsys.readouterr().err
    assert main([str(a) for a in ["corr-train", "--train-store", ",".join(map(str, draws["trn"])),
                                  "--train-store", str(draws["trn"][0]), "--val-store", str(draws["val"][0]),
                                  "--val-store", str(draws["val"][0]), *common, "--out-dir", tmp / "bad-count"]]) == 2
    assert "the same number of noise-draw stores" in capsys.readouterr().err
    assert not (tmp / "bad-same").exists() and not (tmp / "bad-count").exists()
