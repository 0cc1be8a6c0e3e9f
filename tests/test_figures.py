"""Figures and tables: the Figure 2 diagram's structure, the paper_figures index, and `snakemake figures`
rebuilding only notebooks after a theme change."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from diffact.models.configs import build_unet
from diffact.viz.architecture import block_kinds, unet_columns, unet_config
from diffact.viz.index import PaperItem, build_index, paper_items

ROOT = Path(__file__).resolve().parents[1]


def test_sdxl_columns_follow_the_real_config():
    unet = build_unet(unet_config("stabilityai/stable-diffusion-xl-base-1.0"), device="meta")
    columns = unet_columns(unet)
    assert [c.label for c in columns] == ["down-level0", "down-level1", "down-level2", "mid", "up-level0",
                                         "up-level1", "up-level2"]
    assert [c.scale for c in columns] == [1, 2, 4, 4, 4, 2, 1]
    up0 = columns[4].modules
    assert [m.kind for m in up0] == ["res", "vit", "res", "vit", "res", "vit", "upsampler"]
    assert [m.blocks for m in up0 if m.kind == "vit"] == [10, 10, 10]  # SDXL: 10 basic blocks per ViT at 1/4
    assert [m.blocks for m in columns[1].modules if m.kind == "vit"] == [2, 2]
    assert all(m.kind == "res" for m in columns[6].modules)  # up-level2 has no ViT in SDXL
    assert block_kinds(unet) == ["self-q", "self-k", "self-v", "self-map", "cross-q", "cross-map", "ffn-inner",
                                 "block-out"]


def test_unet_config_rejects_an_unknown_reference(tmp_path):
    from diffact.utils.errors import ModelError

    with pytest.raises(ModelError, match="no unet/config.json"):
        unet_config(tmp_path)
    with pytest.raises(ModelError, match="not-a/model"):
        unet_config("not-a/model")


def test_the_item_list_accounts_for_the_papers_24_items():
    ids = [item.id for item in paper_items()]
    assert ids == [f"Figure {i}" for i in range(1, 19)] + [f"Table {i}" for i in range(1, 7)]
    assert all(item.missing for item in paper_items())


def test_index_lists_files_rules_inputs_and_missing_reasons(tmp_path):
    figures, notebooks = tmp_path / "paper_figures", tmp_path / "notebooks"
    figures.mkdir()
    notebooks.mkdir()
    (figures / "table9.csv").write_text("a,b\n1,2\n")
    (figures / "table9.md").write_text("| method | ours | paper |\n|---|---|---|\n| X | 1.0 | 2.0 |\n")
    (figures / "table9b.csv").write_text("x\n")
    (figures / "extra.png").write_bytes(b"png")
    (notebooks / "t9.provenance.json").write_text(json.dumps({
        "rule": "table9_notebook", "notebook": "notebooks/t9.py",
        "inputs": ["notebooks/t9.py", "results/t9/scores.csv"],
        "outputs": [str(figures / "table9.csv"), str(figures / "table9.md")]}))
    items = [PaperItem(id="Table 9", title="nine", files=["table9.*", "table9b.*"], missing="m9", paper="9.0",
                     embed="table9.md"),
             PaperItem(id="Table 10", title="ten", files=["table10.*"], missing="needs a video model"),
             PaperItem(id="Table 11", title="eleven", files=["table9.*", "table11_left.*"], missing="needs seg")]
    text = build_index(figures, notebooks, "demo", items)
    assert "2 of the paper's 3 figures and tables" in text
    assert "| Table 9 | nine | [`table9.csv`](table9.csv) [`table9.md`](table9.md) [`table9b.csv`](table9b.csv) " \
           "| table9_notebook | produced |" in text
    assert "| Table 10 | ten | – | – | not produced: needs a video model |" in text
    assert "partly produced (no file for table11_left.*): needs seg" in text
    assert "Rule `table9_notebook` ran `notebooks/t9.py` on: `results/t9/scores.csv`" in text
    assert "> | X | 1.0 | 2.0 |" in text  # the table with the paper's numbers beside ours is embedded
    assert "[`extra.png`](extra.png) (rule ?)" in text


def _snakemake(cwd, *args):
    done = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", *args], cwd=cwd, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def _planned_rules(log: str) -> set[str]:
    lines = log.split("Job stats:")[1].splitlines()[3:]
    rules = set()
    for line in lines:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        rules.add(parts[0])
    return rules


def _completed_run(tmp_path) -> set[str]:
    """A copy of the workflow after a completed demo run (simulated: every output created, then `--touch`ed in DAG
    order); returns the rules that write into paper_figures/ (the notebooks and the index)."""
    from conftest import copy_workflow

    copy_workflow(tmp_path)
    summary = _snakemake(tmp_path, "--detailed-summary", "--quiet", "all")
    rows = [line.split("\t") for line in summary.splitlines() if "\t" in line][1:]
    figure_rules = set()
    for row in rows:
        output, rule = row[0], row[2]
        path = tmp_path / output
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        if output.startswith("paper_figures/"):
            figure_rules.add(rule)
    _snakemake(tmp_path, "--touch")
    assert "Nothing to be done" in _snakemake(tmp_path, "-n", "figures")
    return figure_rules


def test_figures_rebuild_without_the_feature_stores(tmp_path):
    """Issue #19 point 3: with results/features/ deleted, rerunning every figure notebook (`snakemake figures
    --forcerun <the notebook rules>`) plans the notebooks only: they read figure maps and CSVs, no store, so no
    extraction (before, fig03_pca, fig03_properties, fig05_13_scenes and fig16_18_within read stores)."""
    import shutil

    figure_rules = _completed_run(tmp_path)
    assert {"fig03_pca", "fig03_properties", "fig05_13_scenes", "fig15_control", "fig16_18_within"} <= figure_rules
    shutil.rmtree(tmp_path / "results" / "features")
    planned = _planned_rules(_snakemake(tmp_path, "-n", "figures", "--forcerun", *sorted(figure_rules)))
    assert "extract" not in planned
    assert planned <= figure_rules | {"figures"}, planned - figure_rules


def test_a_theme_change_reruns_notebooks_only(tmp_path):
    """After a completed run, changing the theme module makes `snakemake figures` plan notebook jobs (and the index)
    only: no extraction, training or scoring."""
    figure_rules = _completed_run(tmp_path)
    theme = tmp_path / "src/diffact/viz/theme.py"
    theme.write_text(theme.read_text() + "\nDPI = 120  # a style change\n")
    later = time.time() + 5  # Snakemake compares mtimes first, then checksums of small inputs
    os.utime(theme, (later, later))
    planned = _planned_rules(_snakemake(tmp_path, "-n", "figures"))
    assert planned, "a theme change must rerun the notebooks"
    assert planned <= figure_rules | {"figures"}, planned - figure_rules
    assert {"extract", "build_demo_model", "corr_train"} & planned == set()
    assert {"fig02_architecture", "fig03_pca", "fig01_notebook", "figures_index"} <= planned
