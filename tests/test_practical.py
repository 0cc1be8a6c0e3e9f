"""The screen-chosen practical set (ours, for DiTs): choice rule, the written set file, its use by corr-evaluate
(``--layers-file``) and by the layer-set resolution the API and extraction share."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
import yaml

from diffact.cli import main
from diffact.data.demo_spair import build_demo_spair
from diffact.data.registry import dataset_images
from diffact.extract.store import FeatureStore
from diffact.tasks.correspondence.practical import block_of, choose_practical
from diffact.utils.errors import ConfigError, DataError


def _screen(rows):
    return pd.DataFrame([{"forward_index": i, "layer": layer, "protocol": "nn/val/eval64", "pck_img@0.10": score}
                         for i, (layer, score) in enumerate(rows)])


def test_block_of_names_dit_and_unet_blocks():
    assert block_of("vit-block3-self-k") == "vit-block3"
    assert block_of("vit-block12-ffn-inner") == "vit-block12"
    assert block_of("up-level1-repeat0-vit-block0-cross-q") == "up-level1-repeat0-vit-block0"
    assert block_of("up-level1-repeat2-res-out") == "up-level1-repeat2-res"
    assert block_of("up-level1-repeat0-vit-out") == "up-level1-repeat0-vit"
    assert block_of("up-level1-upsampler-out") == "up-level1-upsampler-out"


def test_choice_takes_one_per_block_in_forward_order_and_breaks_ties_by_depth():
    screen = _screen([("vit-block0-self-q", 50), ("vit-block0-out", 90), ("vit-block1-out", 80),
                      ("vit-block1-self-k", 85), ("vit-block2-out", 80), ("vit-block3-out", 10)])
    # block0's best is its out (90); block1's best its self-k (85); then the tie at 80 goes to the earlier block2
    # over block1-out, which is refused anyway (block1 taken).
    assert choose_practical(screen, top=3) == ["vit-block0-out", "vit-block1-self-k", "vit-block2-out"]
    assert choose_practical(screen, top=1) == ["vit-block0-out"]
    with pytest.raises(DataError, match="only 4 blocks"):
        choose_practical(screen, top=5)
    with pytest.raises(DataError, match="no column 'pck_bbox@0.10'"):
        choose_practical(screen, metric="pck_bbox@0.10")


def test_set_file_round_trip_and_family_check(tmp_path):
    from diffact.extract.layersets import resolve_layers_arg
    from diffact.models.demo import build_denoiser

    denoiser = build_denoiser("sd3")
    screen_path = tmp_path / "screen.csv"
    _screen([("vit-block0-self-q", 60), ("vit-block5-out", 70), ("vit-block5-self-k", 71)]).to_csv(screen_path, index=False)
    out = tmp_path / "practical.yaml"
    assert main(["practical-set", "--screen", str(screen_path), "--family", "sd3", "--model-name", "sd3-tiny",
                 "--top", "2", "--out", str(out)]) == 0
    spec = yaml.safe_load(out.read_text())
    assert spec["layers"] == ["vit-block0-self-q", "vit-block5-self-k"] and spec["family"] == "sd3"
    assert "not the paper" in spec["description"] and "sha256" in spec["source"]
    assert resolve_layers_arg(denoiser, "sd3", str(out)) == ["vit-block0-self-q", "vit-block5-self-k"]
    with pytest.raises(ConfigError, match="family 'sd3', but the model is of family 'pixart'"):
        resolve_layers_arg(denoiser, "pixart", str(out))
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_layers_arg(denoiser, "sd3", str(tmp_path / "missing.yaml"))


def test_corr_evaluate_scores_only_the_set_files_layers(tmp_path, capsys):
    root = build_demo_spair(tmp_path / "spair", n_images=2, pairs_per_image=3, image_size=32, max_keypoints=5)
    layers = {"vit-block0-out": (4, 4, 4), "vit-block1-out": (2, 4, 4)}
    store = FeatureStore.create(tmp_path / "store", {"split": "test"}, layers=layers)
    ids = [image_id for image_id, _ in dataset_images("spair", root, "test")]
    g = torch.Generator().manual_seed(0)
    for image_id in ids:
        store.write(image_id, {n: torch.randn(*s, generator=g) for n, s in layers.items()})
    store.finalize(ids)
    set_file = tmp_path / "practical.yaml"
    set_file.write_text(yaml.safe_dump({"name": "practical", "family": "sd3", "layers": ["vit-block1-out"]}))
    common = ["corr-evaluate", "--method", "nn", "--protocol", "heldout", "--store", str(store.root),
              "--dataset-root", str(root), "--subset", "all", "--feature-size", "8", "--eval-size", "16"]
    assert main([*common, "--out", str(tmp_path / "all.csv")]) == 0
    assert main([*common, "--layers-file", str(set_file), "--out", str(tmp_path / "set.csv")]) == 0
    assert pd.read_csv(tmp_path / "all.csv")["channels"].item() == 6
    assert pd.read_csv(tmp_path / "set.csv")["channels"].item() == 2
    set_file.write_text(yaml.safe_dump({"name": "practical", "family": "sd3", "layers": ["vit-block7-out"]}))
    assert main([*common, "--layers-file", str(set_file), "--out", str(tmp_path / "bad.csv")]) != 0
    assert "vit-block7-out" in capsys.readouterr().err and not (tmp_path / "bad.csv").exists()
