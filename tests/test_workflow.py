"""The workflow plans, and the demo chain runs end to end on two images (extract → NN PCK → CSV)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from diffact import workflow as wf
from diffact.viz.pca import pca_rgb

ROOT = Path(__file__).resolve().parents[1]


def test_snakemake_dry_run_of_the_default_target():
    done = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--forceall", "--rerun-incomplete", "--nolock", "--cores", "2", "--quiet", "rules"],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    for rule in ("build_demo_model", "demo_spair", "extract", "pck_screen", "pck_table", "fig03_pca", "fig_demo_loss"):
        assert rule in done.stdout or rule in done.stderr


def test_the_documented_unlock_command_releases_a_killed_runs_lock(tmp_path):
    """docs/determinism.md and the README tell users to release a killed run's lock with `snakemake --unlock`
    (issue #16, point 9). It used to stop with "Workflow requires a total number of cores to be defined": the
    demo's `threads: all` asked snakemake for its cores when the rules were read, and --unlock takes no --cores."""
    import re

    documented = {match.strip() for doc in ("docs/determinism.md", "README.md")  # inline or in a code block
                  for match in re.findall(r"(snakemake --unlock[^`\n#]*)", (ROOT / doc).read_text())}
    assert documented == {"snakemake --unlock"}
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text((ROOT / "config" / "config.yaml").read_text())  # threads: all
    locks = tmp_path / ".snakemake" / "locks"
    locks.mkdir(parents=True)
    for name in ("0.input.lock", "0.output.lock"):  # what a SIGKILLed snakemake leaves
        (locks / name).write_text(str(tmp_path / "results" / "x") + "\n")
    command = documented.pop().split()[1:]
    done = subprocess.run([sys.executable, "-m", "snakemake", *command, "--snakefile", str(ROOT / "Snakefile"),
                           "-d", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not locks.exists() or not list(locks.iterdir())


def test_store_paths_follow_the_settings():
    import yaml

    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    a = wf.store_dir(config, "spair", "sd15-tiny", "screen")
    config["extraction"]["t"] = 100
    b = wf.store_dir(config, "spair", "sd15-tiny", "screen")
    assert a != b and a.rsplit("-", 1)[0] == b.rsplit("-", 1)[0]
    assert "--t 100" in wf.extract_args(config, "spair", "sd15-tiny", "screen")
    assert wf.model_entry(config, "sd15-tiny-random")["source"].endswith("sd15-tiny-random")


def test_demo_chain_on_two_images(tiny_pipeline_dirs, tmp_path, cli):
    data = tmp_path / "spair"
    assert cli("make-demo-spair", "--out", data, "--seed", "0", "--n-images", "1", "--pairs-per-image", "3",
               "--image-size", "32", "--categories", "chelsea").returncode == 0
    store = tmp_path / "store"
    done = cli("extract", "--model", tiny_pipeline_dirs["sd15"], "--family", "sd15", "--layers", "legacy",
               "--dataset-kind", "spair", "--dataset-root", data, "--split", "test", "--out", store,
               "--image-size", "32", "--prompt", "a photo")
    assert done.returncode == 0, done.stderr
    table = tmp_path / "pck.csv"
    assert cli("pck-screen", "--store", store, "--dataset-root", data, "--split", "test", "--eval-size", "32",
               "--model-name", "tiny", "--out", table).returncode == 0
    rows = pd.read_csv(table)
    assert list(rows["layer"]) == ["up-level0-upsampler-out", "up-level1-upsampler-out", "up-level2-upsampler-out",
                                   "up-level3-repeat2-vit-out"]
    assert rows["pck_img@0.10"].between(0, 100).all() and (rows["n_keypoints"] > 0).all()
    columns = list(rows.columns)  # each per-image PCK (mean over pairs) beside its pooled column
    assert columns.index("pck_bbox@0.15_per_image") == columns.index("pck_bbox@0.15") + 1
    pixels = tmp_path / "pixels.csv"
    assert cli("pck-pixels", "--dataset-root", data, "--split", "test", "--image-size", "32", "--eval-size", "32",
               "--out", pixels).returncode == 0
    # a target made by a mild warp of its source: raw pixels already find many keypoints
    assert pd.read_csv(pixels)["pck_img@0.10"].iloc[0] > 20
    assert 0 <= pd.read_csv(pixels)["pck_img@0.10_per_image"].iloc[0] <= 100
    # The demo tree has no DHF subset file: test-360 stops the run unless it may be drawn, and then rows say so.
    drawn = tmp_path / "pixels-drawn.csv"
    args = ["pck-pixels", "--dataset-root", data, "--split", "test", "--subset", "test-360", "--image-size", "32",
            "--eval-size", "32", "--out", drawn]
    refused = cli(*args)
    assert refused.returncode == 2 and "spair_71k_test-360.json is in none of" in refused.stderr and not drawn.exists()
    assert cli(*args, "--subset-fallback", "draw").returncode == 0
    assert pd.read_csv(drawn)["protocol"].tolist() == ["nn/test/test-360-drawn/eval32"]


def test_pca_rgb_of_a_two_region_map():
    feature = torch.zeros(5, 4, 4)
    feature[0, :, :2] = 1.0  # left half differs from right half along one channel
    rgb = pca_rgb(feature, size=8)
    assert rgb.shape == (8, 8, 3) and rgb.min() >= 0 and rgb.max() <= 1
    assert np.allclose(rgb[:, :4, 0], rgb[0, 0, 0]) and not np.isclose(rgb[0, 0, 0], rgb[0, 7, 0])


def test_noise_draws_are_datasets_with_a_shifted_noise_seed():
    """#16 point 3: draw k of a dataset's stores is `<dataset>.draw<k>`: the same images and entry, noise_seed + k,
    its own store folder; Table 1 reads K of them for trn and val, one for test."""
    import copy

    import pytest
    import yaml

    from diffact.workflow import correspondence as corr_plan
    from diffact.utils.errors import ConfigError

    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    assert wf.dataset_entry(config, "spair-trn.draw2") is config["datasets"]["spair-trn"]
    base = wf.extraction_settings(config, "spair-trn", "sd15-tiny").noise_seed
    assert wf.extraction_settings(config, "spair-trn.draw2", "sd15-tiny").noise_seed == base + 2
    first, third = (wf.store_dir(config, d, "sd15-tiny", "legacy") for d in ("spair-trn", "spair-trn.draw2"))
    assert "/features/spair-trn.draw2/sd15-tiny/legacy-" in third and first.rsplit("-", 1)[1] != third.rsplit("-", 1)[1]
    assert f"--noise-seed {base + 2} " in wf.extract_args(config, "spair-trn.draw2", "sd15-tiny", "legacy")
    with pytest.raises(ConfigError, match="unknown dataset 'nope.draw1'"):
        wf.dataset_entry(config, "nope.draw1")

    t1 = config["correspondence"]["table1"]
    k = t1["noise_draws"]
    assert t1["noise"] == "draws" and k >= 2
    assert corr_plan.role_datasets(config, "trn") == ["spair-trn"] + [f"spair-trn.draw{i}" for i in range(1, k)]
    assert corr_plan.role_datasets(config, "test") == ["spair"]
    fixed = copy.deepcopy(config)
    fixed["correspondence"]["table1"]["noise"] = "fixed"
    assert corr_plan.role_datasets(fixed, "val") == ["spair-val"]
    for key, value, message in (("noise", "fresh", "noise = 'fresh'; expected one of fixed, draws"),
                                ("noise_draws", 1, "noise_draws = 1; noise: draws needs an integer ≥ 2")):
        bad = copy.deepcopy(config)
        bad["correspondence"]["table1"][key] = value
        with pytest.raises(ConfigError, match=message):
            corr_plan.table1_settings(bad)


def test_corr_train_job_reads_every_noise_draw_of_each_part():
    import re

    target = "results/correspondence/table1/xl-t/combined/run/evaluations.csv"
    done = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-p", "--forceall", "--nolock", "--cores", "2", target],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    command = next(line for line in done.stdout.splitlines() if "corr-train" in line)
    for flag, dataset in (("--train-store", "spair-trn"), ("--val-store", "spair-val")):
        values = re.findall(rf"{flag} (\S+)", command)
        assert len(values) == 3  # Ours-XL-t: three parts
        for value in values:
            draws = value.split(",")
            assert [d.split("/features/")[1].split("/")[0] for d in draws] == [dataset, f"{dataset}.draw1", f"{dataset}.draw2"]
