"""The workflow's config-to-arguments layer (diffact.workflow) and the shape of the rules files that call it: the
demo plans the same jobs per rule as before the package existed, each rules file reads only names of the package
or of common.smk (so the includes may come in any order), and no rule runs Python inside its shell command."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from diffact import workflow as wf

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "workflow" / "rules"
DEMO = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())

# Jobs of `snakemake -n --forceall` on the demo profile per rule (186 in all), recorded before the rules files
# moved their config logic into diffact.workflow (issue #18: 192, the same per rule before and after), less the 4
# pool stores the streamed NN screens no longer write (issue #19: sd15-tiny-random's and sdxl-tiny-random's on
# spair, sd3-tiny's on spair-val, and sd3-tiny's on spair, which practical_nn now streams too), less the 3 stores only
# the figures read before the property and PCA maps streamed (issue #19 point 3: sd15-tiny's screen store on spair
# for Fig 3's PCA, sd3-tiny's on both scenes; the U-Nets' scene stores stay for the demo's label-scarce screens),
# with pca_maps (1) and the control's property maps in their own rule (control_property_maps 2, property_maps
# 8 → 6); and with extraction.group: layer_set (issue #19 point 1) the 52 stores' extract jobs are 8 extract-group
# jobs, one rule per model and layer set (142 jobs in all). The paper profile's are PAPER_JOBS in
# tests/test_paper_profile.py.
DEMO_GROUPS = {f"extract_group_{model}_{layer_set}": 1 for model in ("sd15_tiny", "sdxl_tiny")
               for layer_set in ("legacy", "practical", "amalgamation", "screen")}
DEMO_JOBS = {
    "build_demo_model": 4, "demo_ade_data_ade_demo": 1, "demo_seg_data_seg_complex": 1, "demo_seg_data_seg_simple": 1,
    "demo_spair": 1, "properties_unavailable": 1, "qualitative_filter": 2, **DEMO_GROUPS, "fig02_architecture": 2,
    "fig_demo_loss": 1, "fig_properties_filter": 1, "noise_share": 6, "pck_pixels": 1, "scarce_filter": 2,
    "seg_baseline": 1, "seg_train": 7, "train_control_unet": 1, "control_features": 2, "corr_evaluate": 28,
    "corr_train": 7, "fig03_pca": 1, "fig05_13_scenes": 2, "pck_screen": 4, "practical_screen": 1,
    "property_maps": 6, "control_property_maps": 2, "pca_maps": 1, "scarce_screen": 4, "scarce_set": 7, "table2_left_notebook": 1, "pck_table": 1,
    "practical_set": 1, "properties_table": 4, "scarce_compare": 2, "table2_right_notebook": 1, "corr_table1": 1,
    "fig03_properties": 2, "fig04_pck": 2, "fig16_18_within": 2, "fig_demo_nn_pck": 1,
    "fig_properties_unet_vs_dit": 1, "practical_nn": 1, "scarce_table3_run": 6, "table4_6_notebook": 2,
    "fig01_notebook": 1, "fig15_control": 1, "fig_properties_numbers": 1, "practical_table": 1, "table1_notebook": 1,
    "table3_notebook": 1, "figures_index": 1, "all": 1,
}
PAPER_ORDER = ["models", "data", "extract", "properties", "properties_figures", "compare", "correspondence",
               "correspondence_table1", "segmentation", "scarce", "figures"]
LONGEST_RULES_FILE = 250  # lines: a rules file a reader can take in at once


def job_counts(text: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run as {rule: jobs}."""
    counts = {}
    for line in text[text.index("Job stats:"):].splitlines()[3:]:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        counts[parts[0]] = int(parts[1])
    return counts


def dry_run(cwd: Path) -> dict[str, int]:
    done = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--forceall", "--nolock", "--cores", "1",
                           "--quiet", "rules"], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return job_counts(done.stdout + done.stderr)


# ---- the rules files --------------------------------------------------------------------------------------------

def test_snakefile_includes_every_rules_file_in_the_papers_order():
    included = re.findall(r'^include: "workflow/rules/(\w+)\.smk"', (ROOT / "Snakefile").read_text(), re.M)
    assert included == ["common", *PAPER_ORDER]
    assert sorted(p.stem for p in RULES.glob("*.smk")) == sorted(included)
    assert not (RULES / "helpers").exists()


def _top_level_names(text: str) -> set[str]:
    """Names a rules file binds at its top level: assignments, functions, classes, loop variables, imports."""
    names = set(re.findall(r"^([A-Za-z_]\w*)\s*(?::[^=]*)?=(?!=)", text, re.M))
    names |= set(re.findall(r"^(?:def|class)\s+(\w+)", text, re.M))
    for targets in re.findall(r"^for\s+(.+?)\s+in\s", text, re.M):
        names |= set(re.findall(r"\w+", targets))
    for imported in re.findall(r"^(?:from\s+\S+\s+)?import\s+(.+)$", text, re.M):
        names |= {part.split(" as ")[-1].strip() for part in imported.split(",")}
    return names


def test_no_rules_file_reads_a_name_another_rules_file_defines():
    """Each rules file can be read alone (after common.smk): what it defines, no other file uses, so the
    includes follow the paper's order rather than an order forced by shared variables."""
    texts = {name: (RULES / f"{name}.smk").read_text() for name in PAPER_ORDER}
    for name, text in texts.items():
        for other, other_text in texts.items():
            if other == name:
                continue
            code = "\n".join(line.split("#", 1)[0] for line in other_text.splitlines())  # comments may name them
            used = {n for n in _top_level_names(text) if re.search(rf"\b{re.escape(n)}\b", code)}
            assert not used, f"{other}.smk uses {sorted(used)}, defined in {name}.smk"


def test_the_includes_in_reverse_order_plan_the_same_jobs(tmp_path):
    """The strong form of the check above: the demo plans the same jobs with the rules files included backwards."""
    for part in ("config", "notebooks", "src", "workflow"):
        (tmp_path / part).symlink_to(ROOT / part)
    snakefile = (ROOT / "Snakefile").read_text()
    includes = [f'include: "workflow/rules/{name}.smk"' for name in PAPER_ORDER]
    for include in includes:
        snakefile = snakefile.replace(include + "\n", "")
    snakefile = snakefile.replace('include: "workflow/rules/common.smk"\n',
                                  'include: "workflow/rules/common.smk"\n' + "\n".join(reversed(includes)) + "\n")
    (tmp_path / "Snakefile").write_text(snakefile)
    assert dry_run(tmp_path) == DEMO_JOBS


def test_the_demo_plans_the_same_jobs_per_rule():
    assert dry_run(ROOT) == DEMO_JOBS


def test_rules_files_stay_short():
    lengths = {p.name: len(p.read_text().splitlines()) for p in RULES.glob("*.smk")}
    assert max(lengths.values()) < LONGEST_RULES_FILE, lengths


def test_no_rule_runs_python_in_its_shell():
    """What `$(python -c ...)` computed at job time (a store's layers, the filter's kept activations, a store's
    channel total) is read by the rule's own diffact command (--layers all, --layers-from-csv, --budget-from-store)."""
    for path in [*RULES.glob("*.smk"), ROOT / "Snakefile"]:
        assert "python -c" not in path.read_text(), path


# ---- the package, without snakemake ----------------------------------------------------------------------------

def test_each_profile_writes_its_figures_to_its_own_folder():
    assert wf.figures_dir(DEMO) == "paper_figures/demo"
    assert wf.figures_dir({"profile": "paper"}) == "paper_figures/paper"
    assert wf.figures_dir({"profile": "rehearsal", "paper_figures": "results/rehearsal/paper_figures"}) \
        == "results/rehearsal/paper_figures"
    figures = wf.targets.figure_targets(DEMO)
    assert figures[-1] == "paper_figures/demo/README.md"  # the index, beside the figures it lists
    assert all(path.startswith("paper_figures/demo/") for path in figures)
    assert wf.targets.figure_targets(DEMO, with_index=False) == figures[:-1]
    assert set(figures) <= set(wf.targets.all_targets(DEMO))


def test_optional_flags_pass_only_what_the_profile_sets():
    """A protocol default lives with its command (argparse or the dataclass), not repeated in the workflow."""
    assert wf.optional_flags({"top": 3}, {"top": "--top", "metric": "--metric"}) == "--top 3"
    assert wf.optional_flags({}, {"top": "--top"}) == ""
    assert wf.optional_flags({"prompt": "a horse"}, {"prompt": "--prompt"}) == "--prompt 'a horse'"
    config = {"scarce": {"protocol": {"size": 32, "upsample": "bilinear"}, "table2": {"splits": 3}}}
    assert wf.scarce.protocol_args(config, wf.scarce.table2(config)) == "--splits 3 --size 32 --upsample bilinear"
    assert wf.scarce.protocol_args(config, {}, sets=False) == "--size 32"  # a screen: one activation, no upsampling
    assert wf.scarce.threads(config) == wf.scarce.THREADS
    assert wf.correspondence.practical_set_args({"correspondence": {"practical": {"models": ["m"]}}}) == ""


def test_demo_stage_plans_without_snakemake():
    """A few of the values the rules read, checked against the demo profile directly."""
    assert wf.scarce.t2_runs(DEMO)[-1] == (wf.scarce.COMBINED, "xl-t")
    sources = wf.scarce.t2_sources_arg(DEMO, wf.scarce.COMBINED, "xl-t", ["a/complete.json", "b/complete.json",
                                                                           "c/complete.json"])
    assert sources.count("--layers all") == 3 and sources.startswith("--store sdxl-tiny-practical=a ")
    for model in wf.scarce.models(DEMO):
        stores = wf.compare.budget_stores(DEMO, model)
        expected = f"--budget-from-store {stores[0]}" if stores else f"--budget {wf.compare.budget(DEMO, model)}"
        assert wf.compare.budget_arg(DEMO, model, stores) == expected
    assert wf.compare.kept_layers_arg("r/filter.csv") == "--layers-from-csv r/filter.csv:layer:kept=True"
    control = wf.properties.CONTROL
    assert wf.properties.control_store(DEMO, "seg-simple") == f"results/properties/{control}/seg-simple/store/complete.json"
    # the property maps stream with the scene store's own extract arguments (its key: the same features)
    assert wf.properties.streamed_store_args(DEMO, "sd15-tiny", "seg-simple") == wf.extract_args(
        DEMO, "seg-simple", "sd15-tiny", "screen")
    assert wf.properties.figure_maps(DEMO, "sd15-tiny", "seg-simple") == \
        "results/properties/sd15-tiny/seg-simple/figure_maps.npz"
    assert "properties_unet_vs_dit.png" in wf.properties.figure_names(DEMO)  # the demo has U-Nets and a DiT
    assert re.fullmatch(wf.segmentation.model_pattern(DEMO), wf.segmentation.COMBINED)


def test_the_package_plans_the_demos_runs_without_snakemake():
    """The stage modules' own lists of runs have the sizes the dry run plans (DEMO_JOBS)."""
    assert len(wf.correspondence.result_csvs(DEMO)) == DEMO_JOBS["corr_evaluate"]
    assert len({e.folder for e, m, p in wf.correspondence.result_runs(DEMO) if m == "trained"}) == DEMO_JOBS["corr_train"]
    assert len(wf.scarce.t2_runs(DEMO)) == DEMO_JOBS["scarce_set"]
    assert len(wf.compare.t3_runs(DEMO)) == DEMO_JOBS["scarce_table3_run"]
    assert len(wf.segmentation.run_csvs(DEMO)) == DEMO_JOBS["seg_train"]
    assert len(wf.correspondence.models(DEMO)) + len(wf.correspondence.practical_models(DEMO)) >= 1
    entry = next(e for e, m, p in wf.correspondence.result_runs(DEMO) if e.n_models == 1)
    # the trained aggregation's paper protocol reads the validation scores logged in training: no store
    assert wf.correspondence.eval_stores(DEMO, entry.name, entry.layer_set, "trained", "paper") == []
    test_stores = wf.correspondence.eval_stores(DEMO, entry.name, entry.layer_set, "nn", "heldout")
    assert test_stores == [wf.store_done(DEMO, wf.correspondence.split_dataset(DEMO, "test"), *entry.parts[0])]
    draws = wf.correspondence.noise_draws(wf.correspondence.table1_settings(DEMO))
    train = wf.correspondence.draw_store_args(DEMO, "--train-store", entry.name, entry.layer_set, "trn")
    assert train.startswith("--train-store ") and train.count(",") == draws - 1  # one store per noise draw


@pytest.mark.parametrize("name", PAPER_ORDER)
def test_rules_files_hold_rules_not_helpers(name):
    """Functions live in the package (importable, tested); a rules file declares rules."""
    assert not re.search(r"^def ", (RULES / f"{name}.smk").read_text(), re.M)


# ---- the notebook rules' template ---------------------------------------------------------------------------------

def test_notebook_command_derives_the_executed_notebook_and_out_stem_from_the_outputs():
    """A notebook rule names neither its executed notebook nor its out_stem: both follow from its first output."""
    from diffact.utils.errors import ConfigError
    from diffact.viz.commands import derived_params, executed_path

    outputs = ["paper_figures/demo/fig04_pck_m.png", "paper_figures/demo/fig04_pck_m.pdf"]
    assert derived_params(outputs) == {"out_stem": "paper_figures/demo/fig04_pck_m"}
    assert derived_params([]) == {}
    assert executed_path(None, "results/notebooks", outputs) == "results/notebooks/fig04_pck_m.ipynb"
    assert executed_path("elsewhere.ipynb", "results/notebooks", outputs) == "elsewhere.ipynb"
    with pytest.raises(ConfigError, match="give --executed, or --executed-dir"):
        executed_path(None, "results/notebooks", [])
    shell = wf.figures.notebook_shell(DEMO, "fig04_pck", "-p table={input.table}")
    assert shell.endswith("--rule fig04_pck --executed-dir results/notebooks -p table={input.table}")


def test_every_notebook_rule_uses_the_template():
    for path in RULES.glob("*.smk"):
        text = path.read_text()
        assert "--executed {" not in text and "rulename=" not in text, path.name
        assert text.count("notebook {input.nb}") == 0, path.name  # the command lives in wf.figures.notebook_shell


def test_a_demo_model_job_reserves_the_threads_its_training_is_pinned_to():
    """build_demo_model passes demo_models.threads as --threads (the weights' bits depend on it) and reserves that
    many cores, not every core (`threads: all` before issue #19): on 2 cores the demo's models then train side by
    side, one core each, instead of one after another."""
    pinned = wf.demo_model_threads(DEMO)
    assert pinned == 1
    assert "--threads 1" in " ".join(f"--{k.replace('_', '-')} {v}" for k, v in DEMO["demo_models"].items())
    rule = re.search(r"rule build_demo_model:.*?(?=\nrule |\Z)", (RULES / "models.smk").read_text(), re.S).group(0)
    stage, fallback = re.search(r"threads: stage_threads\(\"(\w+)\", fallback=wf\.(\w+)\(config\)\)", rule).groups()
    assert fallback == "demo_model_threads"
    assert wf.rule_threads(DEMO, stage, cores=lambda: 2, fallback=pinned) == pinned
    assert wf.demo_model_threads({"demo_models": {"seed": 0}}) is None  # unset: the stage's threads apply


def test_demo_extraction_jobs_share_the_cores_with_pinned_torch_threads():
    """The demo's model jobs declare one core (start-up dominates them, so two run side by side) while torch's threads
    stay the profile's (extraction.torch_threads), so no job's bytes follow its declared threads or --cores: every
    extract-stage command passes --torch-threads (diffact extract's arguments) or --threads (the control U-Net's
    store, a screen that reads a store). Unpinned at one thread, the control store's features and its noise share
    differ from two threads' (measured); pinned they are byte-identical."""
    pinned = DEMO["extraction"]["torch_threads"]
    assert pinned and wf.stage_threads(DEMO, "extract", cores=2) == 1
    assert wf.pinned_threads_args(DEMO) == f"--threads {pinned}"
    assert wf.pinned_threads_args({"extraction": {}}) == ""
    assert f"--torch-threads {pinned}" in wf.extract_args(DEMO, "seg-simple", "sd15-tiny", "screen")
    for model in ("sd15-tiny", "sd3-tiny"):  # every NN screen streams (the extract arguments, since #19)
        assert re.search(f"--(torch-)?threads {pinned}( |$)", wf.correspondence.screen_source_args(DEMO, model)), model
    rule = (ROOT / "workflow" / "rules" / "extract.smk").read_text()
    control = rule[rule.index("rule control_features:"):]
    assert "threads=wf.pinned_threads_args(config)" in control and "control-features {params.threads}" in control


# Snakemake's own view of jobs (threads reserved, priority) through its API: a dry run's printout shows neither.
_JOBS_SCRIPT = """
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import DAGSettings, ResourceSettings

root, cores, targets = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
with SnakemakeApi() as api:
    workflow_api = api.workflow(resource_settings=ResourceSettings(cores=cores), snakefile=root / "Snakefile",
                                workdir=root)
    workflow_api.dag(DAGSettings(targets=set(targets), forceall=True))
    workflow = workflow_api._workflow
    workflow._prepare_dag(forceall=True, ignore_incomplete=True, lock_warn_only=True)
    workflow._build_dag()
    workflow.dag.update_priority()
    jobs = [{"rule": j.rule.name, "wildcards": dict(j.wildcards), "threads": j.threads, "priority": j.priority}
            for j in workflow.dag.jobs]
print("JOBS " + json.dumps(jobs))
"""


def planned_jobs(targets: list[str], cores: int) -> list[dict]:
    """Each job snakemake plans for ``targets`` on ``cores`` cores: rule, wildcards, threads, priority."""
    done = subprocess.run([sys.executable, "-c", _JOBS_SCRIPT, str(ROOT), str(cores), *targets], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    line = next(s for s in done.stdout.splitlines() if s.startswith("JOBS "))
    return json.loads(line[len("JOBS "):])


def test_model_jobs_reserve_one_core_each_and_the_unets_build_before_the_dit():
    """On the demo's 2 cores: the Fig 15 control (1 pinned torch thread, ~7 CPU s) reserves 1 core (the rule's
    fallback is the pinned count; before, only `resources.default` kept it from the train_unet stage's `all`), and
    the U-Net builds, which most jobs wait for, have a higher priority than the DiT's, so snakemake does not start
    the DiT's 5-minute build first (the priority assertion fails on the rule without `priority:`)."""
    built = [m for m, entry in DEMO["models"].items() if entry.get("build")] + ["sd15-tiny-random"]
    targets = [f"{wf.model_entry(DEMO, m)['source']}/model_index.json" for m in built]
    targets.append(f"{wf.properties.control_model_dir(DEMO)}/model.safetensors")
    jobs = planned_jobs(targets, cores=2)
    control = [j for j in jobs if j["rule"] == "train_control_unet"]
    assert len(control) == 1 and control[0]["threads"] == wf.properties.CONTROL_TRAIN_THREADS == 1
    builds = {j["wildcards"]["model"]: j for j in jobs if j["rule"] == "build_demo_model"}
    assert set(builds) == set(built)
    unets = [m for m in built if not wf.is_transformer(DEMO, m)]
    dits = [m for m in built if wf.is_transformer(DEMO, m)]
    assert unets and dits == ["sd3-tiny"]
    assert min(builds[m]["priority"] for m in unets) > max(builds[m]["priority"] for m in dits)
    assert all(j["threads"] == 1 for j in builds.values())


def test_the_control_command_pins_the_threads_its_rule_reserves():
    """train-control-unet pins its torch threads in its parser (the cli does not import diffact.workflow, which
    takes seconds); the workflow's CONTROL_TRAIN_THREADS must be that number."""
    from diffact.cli import build_parser

    args = build_parser().parse_args(["train-control-unet", "--dataset-root", "d", "--out", "o"])
    assert args.threads == wf.properties.control_train_threads(DEMO)
