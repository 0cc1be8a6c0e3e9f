"""Table 1's conv with fresh noise per visit (``correspondence.table1.noise: stream``, issue #19 point 2):
``corr-train --train-extract/--val-extract`` extracts every trn and val image anew at each visit, with noise seeded by
(seed, split, image, visit) as GDF re-extracts each pair, so no noise-draw store is written; the same arguments give
the same bytes, another seed other numbers, and ``corr-evaluate --extract`` scores the NN and the heldout test the same
way (no Table 1 store at all)."""

from __future__ import annotations

import json
import shlex

import pandas as pd
import pytest

from diffact.data.demo_spair import build_demo_spair

SETTINGS = ["--family", "sd15", "--layers", "legacy", "--dataset-kind", "spair", "--t", 50, "--image-size", 32,
            "--prompt", "a photo", "--storage-dtype", "float16", "--device", "cpu"]
TRAIN = ["corr-train", "--val-subset", "all", "--feature-size", 8, "--eval-size", 16, "--epochs", 1,
         "--pairs-per-epoch", 6, "--eval-every", 2, "--device", "cpu", "--keep-best", "pck_img@0.10"]


@pytest.fixture(scope="module")
def spair(tmp_path_factory):
    return build_demo_spair(tmp_path_factory.mktemp("table1-stream") / "spair", n_images=3, pairs_per_image=6,
                            image_size=40, max_keypoints=5)


def extract_args(model, spair, split):
    return shlex.join(str(a) for a in ["--model", model, "--dataset-root", spair, "--split", split, *SETTINGS])


def train(cli, model, spair, out, *extra):
    return cli(*TRAIN, "--dataset-root", spair, "--train-extract", extract_args(model, spair, "trn"),
               "--val-extract", extract_args(model, spair, "val"), *extra, "--out-dir", out)


def test_stream_trains_and_is_deterministic(cli, spair, tiny_pipeline_dirs, tmp_path):
    model = tiny_pipeline_dirs["sd15"]
    first, second, other = tmp_path / "a" / "run", tmp_path / "b" / "run", tmp_path / "c" / "run"
    for out, extra in ((first, ()), (second, ()), (other, ("--seed", 1))):
        done = train(cli, model, spair, out, *extra)
        assert done.returncode == 0, done.stderr[-2000:]
    for name in ("evaluations.csv", "train_log.csv"):
        assert (first / name).read_bytes() == (second / name).read_bytes()
    assert (first / "train_log.csv").read_bytes() != (other / "train_log.csv").read_bytes()
    run = json.loads((first / "run.json").read_text())
    evaluations = pd.read_csv(first / "evaluations.csv")
    n_val = evaluations["n_pairs"].iloc[0]
    # one pass per image and visit: 2 per training step, 2 per validation pair and validation
    assert run["noise"] == "stream" and run["train_stores"] == []
    assert run["image_extractions"] == {"trn": 2 * 6, "val": 2 * n_val * len(evaluations)}
    assert len(evaluations) == 2 and evaluations["pck_img@0.10"].notna().all()
    [kept] = (first / "checkpoints").iterdir()
    assert kept.name in set(evaluations["checkpoint"])
    # heldout: the selected checkpoint on the test pairs, extracted per pair as well; twice the same bytes
    rows = []
    for name in ("t1.csv", "t2.csv"):
        done = cli("corr-evaluate", "--method", "trained", "--protocol", "heldout", "--run", first, "--dataset-root",
                   spair, "--split", "test", "--subset", "all", "--feature-size", 8, "--eval-size", 16,
                   "--extract", extract_args(model, spair, "test"), "--out", tmp_path / name)
        assert done.returncode == 0, done.stderr[-2000:]
        rows.append((tmp_path / name).read_bytes())
    assert rows[0] == rows[1]
    row = pd.read_csv(tmp_path / "t1.csv").iloc[0]
    assert row["noise"] == "stream" and f"step_{int(row['step']):06d}.safetensors" == kept.name
    assert row["pck_img@0.10"] >= 0
    assert not list(tmp_path.rglob("complete.json"))  # no feature store anywhere


def test_fresh_noise_differs_per_visit(spair, tiny_pipeline_dirs):
    """Two visits of one image get two draws; the same visit of a rerun the same draw."""
    import torch

    from diffact.data.spair import SPairDataset
    from diffact.extract.pipeline import ExtractionSettings
    from diffact.streamed import extraction_over, load_extractor
    from diffact.data.registry import dataset_images
    from diffact.tasks.correspondence.stream import FreshNoiseFeatures

    settings = ExtractionSettings(t=50, prompt="a photo", image_size=32)
    fx = load_extractor({"source": str(tiny_pipeline_dirs["sd15"]), "family": "sd15"}, "legacy", settings, "cpu")
    images = dataset_images("spair", str(spair), "val", None)
    pair = next(iter(SPairDataset(str(spair), split="val")))

    def visits():
        source = extraction_over(fx, settings, images, 1, "float16")
        features = FreshNoiseFeatures([source], 8, "val", seed=0)
        return features(pair)[0], features(pair)[0]

    first, second = visits()
    again, _ = visits()
    assert not torch.equal(first, second)
    assert torch.equal(first, again)


def test_nn_evaluate_streams_the_first_validation_draws(cli, spair, tiny_pipeline_dirs, tmp_path):
    model = tiny_pipeline_dirs["sd15"]
    out = tmp_path / "nn-paper.csv"
    done = cli("corr-evaluate", "--method", "nn", "--protocol", "paper", "--dataset-root", spair, "--split", "val",
               "--subset", "all", "--feature-size", 8, "--eval-size", 16, "--extract", extract_args(model, spair, "val"),
               "--out", out)
    assert done.returncode == 0, done.stderr[-2000:]
    row = pd.read_csv(out).iloc[0]
    assert row["noise"] == "stream" and row["pck_img@0.10"] >= 0


@pytest.mark.parametrize("extra, needle", [
    (("--train-store", "x"), "exclude each other"),
    (("--val-extract", "--model m"), "1 --train-extract but 2 --val-extract"),
])
def test_bad_stream_arguments_are_one_line(cli, spair, tiny_pipeline_dirs, tmp_path, extra, needle):
    done = train(cli, tiny_pipeline_dirs["sd15"], spair, tmp_path / "run", *extra)
    assert done.returncode == 2 and needle in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]
