"""Cross-references of a profile (diffact.workflow.reference_problems): every name a profile uses for another entry
must exist, and a bad one is one line naming where it is, what it names and the known names, when the workflow
loads (before any job runs) and in `diffact check-data`."""

import copy
import subprocess
import sys
from pathlib import Path

import pytest

from diffact import workflow as wf
from diffact.utils.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
MODELS = "(known models: sd15-tiny, sdxl-tiny, sd3-tiny)"
DATASETS = "(known datasets: spair, spair-trn, spair-val, seg-simple, seg-complex, ade-demo)"
SD15_SETS = "(known layer sets: amalgamation, analysis, figure, full, full-maps, legacy, pool, practical, screen)"


@pytest.fixture(scope="module")
def demo():
    return wf.read_profile(ROOT / "config" / "config.yaml")


def broken(config: dict, path: str, value) -> dict:
    """A copy of ``config`` with the dotted ``path`` set to ``value``."""
    config = copy.deepcopy(config)
    *parents, last = path.split(".")
    section = config
    for key in parents:
        section = section.setdefault(key, {})
    section[last] = value
    return config


@pytest.mark.parametrize("profile", ["config.yaml", "paper.yaml", "rehearsal.yaml"])
def test_the_shipped_profiles_have_no_dangling_reference(profile, monkeypatch):
    monkeypatch.chdir(ROOT)  # rehearsal.yaml's base: is relative to the repository
    assert wf.reference_problems(wf.read_profile(ROOT / "config" / profile)) == []


CASES = [
    # model names
    ("correspondence.models", ["nope"], f"correspondence.models[0]: no model 'nope' {MODELS}"),
    ("correspondence.table1.models", ["sd15-tiny", "sdxl-tny"],
     f"correspondence.table1.models[1]: no model 'sdxl-tny'; did you mean 'sdxl-tiny'? {MODELS}"),
    ("figures.pca_model", "sd15", f"figures.pca_model: no model 'sd15'; did you mean 'sd15-tiny'? {MODELS}"),
    ("properties.models", ["sd15-tiny", "nope"], f"properties.models[1]: no model 'nope' {MODELS}"),
    ("correspondence.table1.unavailable", {"sdxl-tny": {"practical": "why"}},
     f"correspondence.table1.unavailable.sdxl-tny: no model 'sdxl-tny'; did you mean 'sdxl-tiny'? {MODELS}"),
    # dataset names, and the kinds the sections need
    ("correspondence.dataset", "spair-tst", "correspondence.dataset: no dataset 'spair-tst'"),
    ("correspondence.dataset", "seg-simple", "correspondence.dataset: dataset 'seg-simple' has kind 'ddpmseg'; "
                                             "expected spair (datasets of that kind: spair, spair-trn, spair-val)"),
    ("correspondence.table1.datasets.val", "spair-valid",
     f"correspondence.table1.datasets.val: no dataset 'spair-valid'; did you mean 'spair-val'? {DATASETS}"),
    ("figures.pca_dataset", "nope", f"figures.pca_dataset: no dataset 'nope' {DATASETS}"),
    # layer-set names (config/layers/<family>/<set>.yaml of each model's family)
    ("correspondence.layer_set", "scren", "correspondence.layer_set: no layer set 'scren' for model sd15-tiny "
                                          f"(config/layers/sd15/); did you mean 'screen'? {SD15_SETS}"),
    ("correspondence.table1.layer_sets", ["legacy", "practicle"],
     "correspondence.table1.layer_sets[1]: no layer set 'practicle' for model sd15-tiny (config/layers/sd15/); "
     f"did you mean 'practical'? {SD15_SETS}"),
    ("correspondence.table1.substitutes", {"sdxl-tiny": {"practical": "demo-practical"}},
     "correspondence.table1.substitutes.sdxl-tiny.practical: no layer set 'demo-practical' for model sdxl-tiny "
     "(config/layers/sdxl/)"),
    ("figures.layer_set", "figures", "figures.layer_set: no layer set 'figures' for model sd15-tiny "
                                     "(config/layers/sd15/); did you mean 'figure'?"),
    ("properties.layer_set", "pol", "properties.layer_set: no layer set 'pol' for model sd15-tiny (config/layers/sd15/)"),
    ("scarce.table2.layer_sets", ["legacy", "amalgamations"],
     "scarce.table2.layer_sets[1]: no layer set 'amalgamations' for model sd15-tiny (config/layers/sd15/); "
     "did you mean 'amalgamation'?"),
    ("scarce.screen.store_set", "scren", "scarce.screen.store_set: no layer set 'scren' for model sd15-tiny"),
    ("scarce.compare.budget", {"sd15-tiny": "practicl"},
     "scarce.compare.budget.sd15-tiny: no layer set 'practicl' for model sd15-tiny (config/layers/sd15/)"),
    ("segmentation.layer_sets", ["legacy", "nope"], "segmentation.layer_sets[1]: no layer set 'nope' for model sd15-tiny"),
    # combined parts: [model, layer set]
    ("correspondence.table1.combined.xl-t.parts", [["sdxl-tiny", "practical"], ["sd16-tiny", "amalgamation"]],
     f"correspondence.table1.combined.xl-t.parts[1][0]: no model 'sd16-tiny'; did you mean 'sd15-tiny'? {MODELS}"),
    ("correspondence.table1.combined.xl-t.parts", [["sdxl-tiny", "practical"], ["sd15-tiny", "amalgam"]],
     "correspondence.table1.combined.xl-t.parts[1][1]: no layer set 'amalgam' for model sd15-tiny"),
    ("segmentation.combined.xl-t.parts", [["sdxl-tiny", ["mid-vit-out"]], ["nope", "legacy"]],
     f"segmentation.combined.xl-t.parts[1][0]: no model 'nope' {MODELS}"),
    ("segmentation.combined.xl-t.parts", [["sdxl-tiny", ["mid-vit-out"]], ["sd15-tiny", "legacyy"]],
     "segmentation.combined.xl-t.parts[1][1]: no layer set 'legacyy' for model sd15-tiny"),
    # scene datasets of the properties
    ("properties.scenes", ["seg-simple", "seg-complx"],
     f"properties.scenes[1]: no dataset 'seg-complx'; did you mean 'seg-complex'? {DATASETS}"),
    ("properties.control.scene", "seg-complx", "properties.control.scene: no scene 'seg-complx' among "
                                               "properties.scenes; did you mean 'seg-complex'? (known scenes: "
                                               "seg-simple, seg-complex)"),
    ("properties.figure_scene", "horse21", "properties.figure_scene: no scene 'horse21' among properties.scenes"),
    ("properties.filter_models", {"sd16": "x"},
     "properties.filter_models.sd16: no model family 'sd16'; did you mean 'sd15'? (known model families: sd15, sdxl, "
     "pixart, sd3, flux)"),
    # a model's family: one of the registry's (diffact.families.registry), not a schema enum
    ("models.sd15-tiny.family", "sd1.5", "models.sd15-tiny.family: no model family 'sd1.5'; did you mean 'sd15'? "
                                         "(known model families: sd15, sdxl, pixart, sd3, flux)"),
    # segmentation models and datasets
    ("segmentation.datasets", ["ade-dem"], f"segmentation.datasets[0]: no dataset 'ade-dem'; did you mean 'ade-demo'? "
                                           f"{DATASETS}"),
    ("segmentation.datasets", ["spair"], "segmentation.datasets[0]: dataset 'spair' has kind 'spair'; expected ade20k "
                                         "or cityscapes (datasets of that kind: ade-demo)"),
    ("segmentation.models", ["sd15-tiny", "sdxl"], "segmentation.models[1]: no model 'sdxl'"),
    ("segmentation.unavailable", {"nope": {"practical": "why"}}, f"segmentation.unavailable.nope: no model 'nope' {MODELS}"),
    # scarce models and datasets
    ("scarce.models", ["sd15-tny", "sdxl-tiny"], "scarce.models[0]: no model 'sd15-tny'; did you mean 'sd15-tiny'?"),
    ("scarce.table3.models", ["sd15"], "scarce.table3.models[0]: no model 'sd15' among scarce.models; did you mean "
                                       "'sd15-tiny'? (known models: sd15-tiny, sdxl-tiny)"),
    ("scarce.table3.paper_generic", {"sd15": "practcal"},
     "scarce.table3.paper_generic.sd15: no layer set 'practcal' for model sd15-tiny"),
    ("scarce.table3.paper_generic", {"sdxl-tny": "practical"}, "scarce.table3.paper_generic.sdxl-tny: no model 'sdxl-tny'"),
    ("scarce.simple", "seg-smple", "scarce.simple: no dataset 'seg-smple'; did you mean 'seg-simple'?"),
    ("scarce.complex", "ade-demo", "scarce.complex: dataset 'ade-demo' has kind 'ade20k'; expected ddpmseg"),
    ("scarce.compare.paper_model", {"sdxl-tny": "sdxl"}, "scarce.compare.paper_model.sdxl-tny: no model 'sdxl-tny'"),
    ("scarce.compare.resolutions", {"sd21": ["32"]}, "scarce.compare.resolutions.sd21: no model family 'sd21'"),
    # stores of extraction.shards_by_store
    ("extraction.shards_by_store", {"spair/nope/screen": 2},
     f"extraction.shards_by_store.spair/nope/screen: no model 'nope' {MODELS}"),
    ("extraction.shards_by_store", {"spair/sd15-tiny/scren": 2},
     "extraction.shards_by_store.spair/sd15-tiny/scren: no layer set 'scren' for model sd15-tiny"),
]


@pytest.mark.parametrize("path, value, expected", CASES, ids=[f"{c[0]}={c[1]}" for c in CASES])
def test_a_dangling_reference_is_one_line_naming_where_what_and_the_known_names(demo, path, value, expected):
    problems = wf.reference_problems(broken(demo, path, value))
    assert len(problems) == 1, problems
    assert problems[0].startswith(expected), problems[0]
    assert "\n" not in problems[0]
    with pytest.raises(ConfigError) as err:
        wf.check_references(broken(demo, path, value))
    assert str(err.value) == problems[0]


def test_a_figure_layer_must_be_in_a_listed_set(demo):
    from diffact.extract.layersets import load_set_spec

    config = broken(broken(demo, "figures.layer_set", "figure"), "figures.pca_layers", ["mid-vit-out", "mid-vit-ot"])
    assert wf.reference_problems(config) == [
        "figures.pca_layers[1]: no layer 'mid-vit-ot' in layer set 'figure' of model sd15-tiny; did you mean "
        f"'mid-vit-out'? (known layers: {', '.join(load_set_spec('sd15', 'figure')['layers'])})"]
    # a `select` set (the demo's screen) knows its layers only against a U-Net: not checked at load
    assert wf.reference_problems(broken(demo, "figures.pca_layers", ["mid-vit-ot"])) == []


def test_several_problems_make_one_line_that_counts_the_rest(demo):
    config = broken(broken(demo, "correspondence.models", ["nope"]), "scarce.simple", "nada")
    with pytest.raises(ConfigError) as err:
        wf.check_references(config)
    assert str(err.value) == (f"correspondence.models[0]: no model 'nope' {MODELS} (and 1 more; `diffact check-data` "
                              "lists them all)")


def test_check_data_lists_every_dangling_reference(demo):
    from diffact.checks import check_profile

    config = broken(broken(demo, "correspondence.models", ["nope"]), "properties.scenes", ["seg-simple", "gone"])
    report = check_profile(config, datasets=False, models=False)
    assert report.problems == [f"config: correspondence.models[0]: no model 'nope' {MODELS}",
                               f"config: properties.scenes[1]: no dataset 'gone' {DATASETS}"]


def test_snakemake_stops_on_a_bad_name_in_one_line_before_planning():
    done = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--nolock", "--cores", "1", "--config",
                           "correspondence={models: [nope]}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert lines[-1] == f"config error: correspondence.models[0]: no model 'nope' {MODELS}"
    assert "Traceback" not in done.stderr and "KeyError" not in done.stderr and "File " not in done.stderr
