"""Config → rules of label-scarce segmentation and the quantitative comparison (workflow/rules/scarce.smk,
compare.smk): a dry run of their targets on the demo config plans the expected jobs with the configured protocol,
the declared unavailable Table 2 sets are exactly those the demo U-Nets lack, and the paper's Tables 2/3 as data."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
SCARCE = CONFIG["scarce"]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def _targets() -> list[str]:
    models = SCARCE["models"]
    return (["paper_figures/demo/table2_right.csv", "paper_figures/demo/table3.csv"]
            + [f"paper_figures/demo/table4_6_{m}.csv" for m in models])


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> str:
    """`snakemake -n -p` of this part's tables in an empty working directory that sees the repository's
    config, notebooks and sources (so nothing exists yet and the repository's own lock is not touched)."""
    if not SNAKEMAKE.is_file():
        pytest.skip("snakemake is not installed next to this Python")
    work = tmp_path_factory.mktemp("scarce_dryrun")
    for name in ("config", "notebooks", "src", "workflow"):
        (work / name).symlink_to(REPO / name)
    proc = subprocess.run(
        [str(SNAKEMAKE), "-n", "-p", "--cores", "1", "--snakefile", str(REPO / "Snakefile"), "-d", str(work),
         *_targets()], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def _job_counts(text: str) -> dict[str, int]:
    block = text.split("Job stats:", 1)[1].split("total", 1)[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\S+)\s+(\d+)\s*$", block, re.M)}


@pytest.mark.slow
def test_dry_run_plans_every_table_job(dry_run):
    models = SCARCE["models"]
    t2 = SCARCE["table2"]
    unavailable = {(m, s) for m, sets in t2.get("unavailable", {}).items() for s in sets}
    t2_runs = [(m, s) for m in models for s in t2["layer_sets"] if (m, s) not in unavailable]
    t3_models = [m for m in SCARCE["table3"]["models"] if m in models]
    combined = t2.get("combined", {})
    counts = _job_counts(dry_run)
    assert counts["scarce_set"] == len(t2_runs) + len(combined)
    for name in combined:  # several stores side by side: one --store LABEL=DIR and --layers per part
        assert f"table2/combined/{name}.csv" in dry_run
        command = next(line for line in dry_run.splitlines() if f"table2/combined/{name}.csv" in line and " scarce " in line)
        assert command.count("--store ") == command.count("--layers ") == len(combined[name]["parts"])
    assert counts["scarce_filter"] == counts["scarce_compare"] == counts["table4_6_notebook"] == len(models)
    assert counts["scarce_screen"] == 2 * len(models)
    # generic + specific per scene; the paper's fixed generic set is "not run" where Table 2 says the model lacks it
    fixed = SCARCE["table3"].get("paper_generic", {})
    with_fixed = [m for m in t3_models if fixed.get("sdxl") and (m, fixed["sdxl"]) not in unavailable]
    assert counts["scarce_table3_run"] == 4 * len(t3_models) + 2 * len(with_fixed)
    if not with_fixed:
        assert "paper-generic-simple.csv" not in dry_run and "--paper-generic" not in dry_run
    assert counts["table2_right_notebook"] == counts["table3_notebook"] == 1
    # stores: each Table 2 set on the simple dataset, the screen store on both datasets (with extraction.group:
    # layer_set written by extract-group jobs, which also write their groups' stores of other datasets)
    scene_stores = set(re.findall(r"--out (results/features/seg-(?:simple|complex)/[^ ']+)", dry_run))
    assert len(scene_stores) == len(t2_runs) + 2 * len(models)
    assert counts["demo_seg_data_seg_simple"] == counts["demo_seg_data_seg_complex"] == 1
    for model, layer_set in unavailable:
        assert f"table2/{model}/{layer_set}.csv" not in dry_run


@pytest.mark.slow
def test_protocol_config_reaches_the_commands(dry_run):
    p = SCARCE["protocol"]
    protocol = (f"--seed {p['seed']} --size {p['size']} --models {p['members']} --epochs {p['epochs']} "
                f"--batch-size {p['batch_size']} --lr {p['lr']} --pixel-rate {p['pixel_rate']}")
    commands = [line.split("Shell command:", 1)[1].strip() for line in dry_run.splitlines() if "Shell command:" in line]
    scarce = [c for c in commands if " scarce --store" in c and "/table2/" in c]
    screens = [c for c in commands if " scarce-screen " in c]
    table3 = [c for c in commands if " scarce --store" in c and "/table3/" in c]
    assert scarce and screens and table3
    assert all(f"--splits {SCARCE['table2']['splits']} {protocol}" in c for c in scarce)
    assert all(f"--splits {SCARCE['screen']['splits']} {protocol}" in c for c in screens)
    assert all(f"--splits {SCARCE['table3']['splits']} {protocol}" in c for c in table3)
    assert all(f"--threads {p['threads']}" in c for c in scarce + screens + table3)
    # the screened activations are what the qualitative filter kept, read by the command when the job runs
    assert all(re.search(r"--layers-from-csv \S+/filter\.csv:layer:kept=True ", c) for c in screens)
    assert not any("python -c" in c for c in commands)
    for model in SCARCE["models"]:
        family = CONFIG["models"][model]["family"]
        compare = next(c for c in commands if " scarce-compare " in c and f"/compare/{model}/" in c)
        budget = SCARCE["compare"]["budget"][model]
        assert f"--paper-model {family}" in compare
        if isinstance(budget, int):
            assert f"--budget {budget} " in compare
        else:  # a layer set: its channel total, read from its store on the simple dataset when the job runs
            assert re.search(rf"--budget-from-store results/features/{SCARCE['simple']}/{model}/{budget}-\w+/complete\.json ",
                             compare)
        assert any(f"qualitative-filter --model {CONFIG['models'][model]['source']} --family {family} --set pool" in c
                   for c in commands)
    make = [c for c in commands if " make-demo-seg " in c]
    assert len(make) == 2 and all(f"--train {SCARCE['demo_data']['train']} --test {SCARCE['demo_data']['test']}" in c
                                  for c in make)


def test_declared_unavailable_sets_are_exactly_the_ones_the_demo_unets_lack():
    from conftest import assert_declared_unavailable_matches

    t2 = SCARCE["table2"]
    assert_declared_unavailable_matches(CONFIG, t2, SCARCE["models"], t2["layer_sets"])


def _reference(name: str) -> pd.DataFrame:
    from importlib import resources

    with resources.as_file(resources.files("diffact.data").joinpath("reference", name)) as path:
        return pd.read_csv(path, comment="#")


def test_paper_tables_2_and_3_as_data():
    from diffact.analysis.compare import PAPER_TABLE3

    t2 = _reference("paper_table2.csv").set_index("method")
    assert len(t2) == 9
    assert tuple(t2.loc["Ours-XL-t", ["miou_mean", "miou_std"]]) == (66.3, 0.9)
    assert tuple(t2.loc["Legacy-XL", ["miou_mean", "miou_std"]]) == (53.0, 0.9)
    sets = t2.dropna(subset=["family"])
    for family in ("sd15", "sdxl"):  # one paper row per (family, named set) the workflow runs
        for layer_set in ("legacy", "practical"):
            assert ((sets["family"] == family) & (sets["layer_set"] == layer_set)).sum() == 1
    t3 = _reference("paper_table3.csv").set_index("setting")
    for setting, scenes in PAPER_TABLE3.items():
        for scene, value in scenes.items():
            assert t3.at[setting, scene] == value
