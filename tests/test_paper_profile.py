"""The paper profile (config/paper.yaml): schema, resources per stage, the full paper DAG against fixture trees in
the real dataset layouts and tiny local models, the local and SLURM profiles, `snakemake --lint`, and
`diffact check-data`. Every workflow check is a dry run."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import WORKFLOW_PARTS

from diffact import workflow as wf
from diffact.utils.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]

# Jobs of the paper DAG per rule (config/paper.yaml; `segmentation` rules are counted by their own tests).
# extract: 62 stores = Table 1 (sd15/sdxl legacy + practical, sd15/pgv2 amalgamation: 6 parts × (4 noise draws ×
# trn/val + test)) 54 + Table 2 right (legacy/practical/amalgamation × 3 models on horse21, less PGv2 practical) 8;
# each in 4 shards. The NN screens and practical_nn stream (issue #19): no spair-screen or val-36 pool is stored; so
# do the property maps and Fig 3's PCA maps (issue #19 point 3: property_maps 14, control_property_maps 2, pca_maps 1;
# no property-scene pool of the 7 models, 14, nor SDXL's figure store on horse21, 1).
# scarce_filtered_store: the label-scarce screens' stores of the filtered activations (3 models × 2 scenes, one job
# each; scarce.screen.store_set: filtered), not of the pool.
# corr_evaluate: 5 entries (4 model × set + Ours-XL-t) × {nn, trained} × {paper, heldout}.
PAPER_JOBS = {
    "extract_shard": 32, "extract": 8,  # Table 2 (right) only: Table 1 streams (noise: stream), the property maps too
    "pck_screen": 7, "pck_pixels": 1, "pck_table": 1,
    "practical_screen": 3, "practical_set": 3, "practical_nn": 3, "practical_table": 1,
    "corr_train": 5, "corr_evaluate": 20, "corr_table1": 1, "table1_notebook": 1, "fig01_notebook": 1,
    "noise_share": 14, "property_maps": 14, "control_property_maps": 2, "pca_maps": 1, "properties_table": 8, "qualitative_filter": 2,
    "fig_properties_unet_vs_dit": 1, "fig02_architecture": 4,
    "train_control_unet": 1, "control_features": 2, "properties_unavailable": 1,
    "fig_properties_numbers": 1, "fig_properties_filter": 1, "fig03_properties": 4, "fig04_pck": 4,
    "fig05_13_scenes": 4, "fig16_18_within": 4, "fig15_control": 1,
    "scarce_set": 7, "table2_right_notebook": 1,
    "scarce_filter": 3, "scarce_filtered_store": 6, "scarce_screen": 6, "scarce_compare": 3, "scarce_table3_run": 6,
    "table4_6_notebook": 3, "table3_notebook": 1,
    "fig03_pca": 1, "fig_demo_nn_pck": 1, "all": 1,
}
PROPERTY_MODELS = ("sdxl", "pgv2", "sd15", "sd21")
# Every figure and table of the paper the profile makes (paper_figures/paper/), by the rule files' naming.
PAPER_TARGETS = (
    ["table1_correspondence.csv", "table1_correspondence.tex", "fig01_correspondence.png", "table2_right.csv",
     "table3.csv", "properties_numbers.png", "properties_filter.csv", "fig15_control.png", "fig03_pca_sdxl.png",
     "properties_unet_vs_dit.png"]
    + [f"table4_6_{m}.csv" for m in ("sd15", "sdxl", "pgv2")]
    + [f"{fig}_{m}.png" for m in PROPERTY_MODELS for fig in ("fig03_properties", "fig04_pck", "fig05_13_scenes",
                                                            "fig16_increments", "fig17_resolution", "fig18_vits")]
)
GPU_RULES = ("extract_shard", "scarce_filtered_store", "noise_share", "control_features", "train_control_unet", "build_demo_model", "corr_train", "corr_evaluate", "practical_nn", "pck_screen", "practical_screen",
             "property_maps", "pca_maps", "scarce_set", "scarce_screen", "scarce_table3_run")


def load_yaml(path):
    return yaml.safe_load(Path(path).read_text())


def run_snakemake(*args, cwd, timeout=300):
    done = subprocess.run([*SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    return done


def job_counts(text: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run as {rule: jobs}."""
    table = text[text.index("Job stats:"):]
    counts = {}
    for line in table.splitlines()[3:]:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        counts[parts[0]] = int(parts[1])
    return counts


# ---- fixture trees in the real layouts -------------------------------------------------------------------

def make_spair(root: Path) -> None:
    from diffact.cli import main

    assert main(["make-demo-spair", "--out", str(root), "--seed", "0", "--n-images", "1", "--pairs-per-image", "3",
                 "--image-size", "32", "--categories", "chelsea,coffee"]) == 0


def make_ddpmseg(root: Path, kind: str) -> None:
    """DDPM-seg release layout (real/train, real/test, <stem>.png + <stem>.npy) without our dataset.json: the
    class table then comes from the folder name (horse_21, bedroom_28), as for the downloaded release."""
    from diffact.cli import main

    assert main(["make-demo-seg", "--kind", kind, "--out", str(root), "--seed", "0", "--size", "32",
                 "--train", "2", "--test", "2"]) == 0
    (root / "dataset.json").unlink()


def make_ade20k(root: Path) -> None:
    from diffact.data.demo_ade import DemoAdeConfig, make_demo_ade

    make_demo_ade(root, DemoAdeConfig(size=32, n_train=2, n_val=1))


def make_cityscapes(root: Path) -> None:
    """Two frames of one city per split, with labelTrainIds maps (what mmseg trains on)."""
    from PIL import Image

    for split, frames in (("train", 2), ("val", 1)):
        for i in range(frames):
            stem = f"aachen_{i:06d}_000019"
            image_dir, label_dir = root / "leftImg8bit" / split / "aachen", root / "gtFine" / split / "aachen"
            image_dir.mkdir(parents=True, exist_ok=True)
            label_dir.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((16, 32, 3), 100 + i, np.uint8)).save(image_dir / f"{stem}_leftImg8bit.png")
            labels = np.zeros((16, 32), np.uint8)
            labels[8:] = 13  # car
            Image.fromarray(labels).save(label_dir / f"{stem}_gtFine_labelTrainIds.png")


@pytest.fixture(scope="module")
def paper_tree(tmp_path_factory, tiny_pipeline_dirs):
    """A working directory with the repository's workflow and a copy of config/paper.yaml whose dataset roots
    are fixture trees in the real layouts and whose models are the tiny local pipelines (save_pretrained); the
    three DiTs become the demo's tiny SD3-shaped DiT (family sd3, whose layer sets exist for every DiT family)."""
    from diffact.models.demo import random_init_pipeline, save_pipeline

    work = tmp_path_factory.mktemp("paper")
    tiny_dit = save_pipeline(random_init_pipeline("sd3", seed=0), work / "tiny-sd3")
    for part in WORKFLOW_PARTS:
        (work / part).symlink_to(ROOT / part)
    data = work / "data"
    make_spair(data / "SPair-71k")
    make_ddpmseg(data / "ddpm-segmentation" / "horse_21", "simple")
    make_ddpmseg(data / "ddpm-segmentation" / "bedroom_28", "complex")
    make_ade20k(data / "ADEChallengeData2016")
    make_cityscapes(data / "cityscapes")
    config = load_yaml(ROOT / "config" / "paper.yaml")
    for entry in config["datasets"].values():
        entry["root"] = str(work / entry["root"])
    for name, entry in config["models"].items():
        if wf.is_transformer(config, name):
            entry.update(source=str(tiny_dit), family="sd3")
        else:
            entry["source"] = str(tiny_pipeline_dirs["sdxl" if entry["family"] == "sdxl" else "sd15"])
        entry.pop("revision", None)
        entry.pop("variant", None)
    (work / "paper-fixture.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return work


# ---- config and resources ----------------------------------------------------------------------------------

def test_both_profiles_validate_and_wrong_types_are_rejected():
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    schema = str(ROOT / "config" / "schema.yaml")
    for name in ("config.yaml", "paper.yaml"):
        validate(load_yaml(ROOT / "config" / name), schema=schema)
    paper = load_yaml(ROOT / "config" / "paper.yaml")
    bad_values = [
        (("resources", "extract", "gpu"), "one"),
        (("resources", "extract", "threads"), 0),
        (("resources", "extract", "threads"), "many"),
        (("resources", "gpus_typo"), {"gpu": 1}),
        (("models", "sdxl", "revision"), 5),
        (("datasets", "horse21", "kind"), "horse"),
        (("extraction", "t"), "fifty"),
    ]
    for path, value in bad_values:
        config = load_yaml(ROOT / "config" / "paper.yaml")
        section = config
        for key in path[:-1]:
            section = section[key]
        section[path[-1]] = value
        with pytest.raises(WorkflowError):
            validate(config, schema=schema)
    assert paper["profile"] == "paper"


def test_paper_profile_values_follow_the_spec():
    """Models by hub id, the paper's sizes, prompts and protocol (docs/paper.md §2.1, §2.8-2.10)."""
    config = load_yaml(ROOT / "config" / "paper.yaml")
    sources = {name: entry["source"] for name, entry in config["models"].items()}
    dits = {"pixart-sigma": "PixArt-alpha/PixArt-Sigma-XL-2-1024-MS",  # beyond the paper (issue #17)
            "sd3-medium": "stabilityai/stable-diffusion-3-medium-diffusers",
            "flux-dev": "black-forest-labs/FLUX.1-dev"}
    assert sources == {"sd15": "stable-diffusion-v1-5/stable-diffusion-v1-5",
                       "sd21": "stabilityai/stable-diffusion-2-1-base",
                       "sdxl": "stabilityai/stable-diffusion-xl-base-1.0",
                       "pgv2": "playgroundai/playground-v2-1024px-aesthetic", **dits}
    assert all(entry.get("revision") for entry in config["models"].values())
    assert all(entry["variant"] == "fp16" for name, entry in config["models"].items() if name not in dits)
    assert {name: config["models"][name]["family"] for name in dits} == {"pixart-sigma": "pixart",
                                                                        "sd3-medium": "sd3", "flux-dev": "flux"}
    sizes = {name: wf.extraction_settings(config, "horse21", name).image_size for name in sources}
    assert sizes == {"sd15": 512, "sd21": 512, "sdxl": 1024, "pgv2": 1024, **{name: 1024 for name in dits}}
    settings = wf.extraction_settings(config, "horse21", "sdxl")
    assert (settings.t, settings.prompt, settings.dtype) == (50, "a photo of a horse", "float16")
    assert wf.extraction_settings(config, "spair-trn", "sd15").prompt.startswith("a highly realistic photo that may contain")
    protocol = config["scarce"]["protocol"]
    assert (protocol["size"], protocol["members"], protocol["epochs"], protocol["batch_size"]) == (256, 10, 100, 64)
    assert config["scarce"]["table2"]["splits"] == 5 and config["correspondence"]["table1"]["feature_size"] == 128


def test_stage_resources_merge_and_threads():
    config = {"resources": {"default": {"threads": 2, "mem_mb": 1000, "runtime": 5},
                            "extract": {"gpu": 1, "mem_mb": 32000, "slurm_partition": "gpu"},
                            "scarce": {"threads": 3}}}
    assert wf.stage_resources(config, "extract") == {"mem_mb": 32000, "runtime": 5, "gpu": 1, "slurm_partition": "gpu"}
    assert wf.stage_resources(config, "notebook") == {"mem_mb": 1000, "runtime": 5, "gpu": 0}
    # threads: the stage's own value, else the rule's fallback, else the default; `all` = snakemake's cores
    assert wf.stage_threads(config, "scarce", cores=8, fallback=1) == 3
    assert wf.stage_threads(config, "screen", cores=8, fallback=2) == 2
    assert wf.stage_threads(config, "extract", cores=8) == 2  # the config's default over the built-in `all`
    assert wf.stage_threads({}, "extract", cores=8) == 8
    assert wf.stage_threads({}, "notebook", cores=8) == 1
    assert wf.stage_threads({"resources": {"analysis": {"threads": "all"}}}, "analysis", cores=6) == 6
    # a rule's `threads: all` asks for the cores per job, not when the rules load (`snakemake --unlock` has none)
    def no_cores():
        raise AssertionError("asked for the cores while reading the rules")
    per_job = wf.rule_threads({}, "extract", cores=no_cores)
    assert callable(per_job) and wf.rule_threads({}, "extract", cores=lambda: 5)("wildcards") == 5
    assert wf.rule_threads(config, "scarce", cores=no_cores, fallback=1) == 3
    with pytest.raises(ConfigError, match="resources.notebook.threads must be a positive integer or 'all'"):
        wf.rule_threads({"resources": {"notebook": {"threads": 0}}}, "notebook", cores=no_cores)
    with pytest.raises(ConfigError, match="unknown resource stage 'extrct'"):
        wf.stage_resources(config, "extrct")


class _FakeWorkflow:
    """What wf.total_cores reads of snakemake's workflow object: `cores` (raises without --cores, as snakemake's
    does under a cluster executor) and resource_settings.max_threads."""

    def __init__(self, cores=None, max_threads=None):
        self._cores = cores
        self.resource_settings = type("ResourceSettings", (), {"max_threads": max_threads})()

    @property
    def cores(self):
        if self._cores is None:
            raise RuntimeError("Workflow requires a total number of cores to be defined")
        return self._cores


def test_threads_all_on_a_cluster_executor_takes_max_threads():
    # found by the first real Slurm run: the demo's `threads: all` stages asked workflow.cores, which a cluster
    # executor (no --cores) does not have, and every extract job crashed before submission
    assert wf.total_cores(_FakeWorkflow(cores=6)) == 6
    assert wf.total_cores(_FakeWorkflow(max_threads=16)) == 16
    per_job = wf.rule_threads({}, "extract", cores=lambda: wf.total_cores(_FakeWorkflow(max_threads=4)))
    assert per_job("wildcards") == 4
    with pytest.raises(ConfigError, match="--max-threads N"):
        wf.total_cores(_FakeWorkflow())
    rules = "".join((ROOT / "workflow" / "rules" / name).read_text() for name in ("common.smk", "extract.smk"))
    assert "workflow.cores" not in rules.replace("wf.total_cores(workflow)", "")


def test_schema_lists_every_resource_stage():
    schema = load_yaml(ROOT / "config" / "schema.yaml")
    assert schema["properties"]["resources"]["propertyNames"]["enum"] == list(wf.RESOURCE_STAGES)


RULES_SCRIPT = """
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings
with SnakemakeApi(OutputSettings()) as api:
    workflow = api.workflow(resource_settings=ResourceSettings(cores=16),
                            config_settings=ConfigSettings(configfiles=[Path(sys.argv[1])]),
                            snakefile=Path("Snakefile"), workdir=Path("."))._workflow
    out = {rule.name: {k: getattr(v, "value", v) for k, v in rule.resources.items()
                       if k in ("_cores", "gpu", "mem_mb", "runtime")} for rule in workflow.rules}
print("RULES=" + json.dumps(out))
"""


def test_every_rule_gets_the_resources_of_its_stage(paper_tree):
    done = subprocess.run([sys.executable, "-c", RULES_SCRIPT, "paper-fixture.yaml"], cwd=paper_tree,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rules = json.loads(done.stdout.split("RULES=")[-1])
    paper = load_yaml(ROOT / "config" / "paper.yaml")["resources"]
    segmentation = {name for name in rules if name.startswith("seg")}  # segmentation.smk sets its own
    for name, res in rules.items():
        if name in ("all", "figures") or name in segmentation:
            continue
        assert {"gpu", "mem_mb", "runtime"} <= set(res), f"rule {name} declares no resources"
        assert (res["gpu"] == 1) == (name in GPU_RULES), f"rule {name}: gpu={res['gpu']}"
    assert rules["extract_shard"] == {"_cores": 4, "gpu": 1, "mem_mb": 32000, "runtime": 720}
    assert rules["extract"]["gpu"] == 0  # sharded: `extract` only merges the shards
    assert rules["scarce_screen"]["runtime"] == paper["screen"]["runtime"]
    assert rules["table3_notebook"] == {"_cores": 1, "gpu": 0, "mem_mb": 8000, "runtime": 30}


# ---- the paper DAG -----------------------------------------------------------------------------------------

def test_paper_dag_plans_every_figure_and_table(paper_tree):
    done = run_snakemake("-n", "--profile", "workflow/profiles/default", "--configfile", "paper-fixture.yaml",
                         "--quiet", "rules", cwd=paper_tree)
    assert done.returncode == 0, done.stderr[-3000:]
    counts = job_counts(done.stdout + done.stderr)
    assert {rule: counts.get(rule) for rule in PAPER_JOBS} == PAPER_JOBS
    # nothing of the demo profile leaks in (the Snakefile loads config/config.yaml only without --configfile)
    assert not {"build_demo_model", "demo_spair"} & set(counts)
    assert not any(rule.startswith("demo_seg_data") for rule in counts)

    summary = run_snakemake("--summary", "--configfile", "paper-fixture.yaml", cwd=paper_tree)
    assert summary.returncode == 0, summary.stderr[-3000:]
    planned = {line.split("\t")[0] for line in summary.stdout.splitlines()}
    missing = [t for t in PAPER_TARGETS if f"paper_figures/paper/{t}" not in planned]  # the profile's own folder
    assert not missing
    # Table 2 (right) runs Ours-XL-t: SDXL practical + SD1.5 and PGv2 amalgamation on Horse-21, concatenated
    assert "results/paper/scarce/table2/combined/xl-t.csv" in planned
    # Table 3 runs the paper's fixed Ours-XL as a row of its own, beside the generic set composed from our screens
    assert {f"results/paper/compare/sdxl/table3/{s}-{c}.csv" for s in ("generic", "paper-generic", "specific")
            for c in ("simple", "complex")} <= planned
    # the paper's sizes reach the jobs: SDXL stores at 1024 px, SD1.5 at 512, the screening on the test subset
    printed = run_snakemake("-n", "-p", "--configfile", "paper-fixture.yaml", "--forceall",
                            "results/paper/correspondence/sdxl/nn_pck.csv", cwd=paper_tree)
    assert printed.returncode == 0, printed.stderr[-3000:]
    # the NN screen streams the SDXL pool (the arguments of its store's extract) and writes no store (issue #19)
    assert re.search(r"pck-screen --model \S+ --family sdxl --layers pool .*--image-size 1024 .*--split test "
                     r"--subset test-90 .*--eval-size 512 ", printed.stdout)
    assert "diffact --log" in printed.stdout and " extract " not in printed.stdout.replace("pck-screen", "")
    printed = run_snakemake("-n", "-p", "--configfile", "paper-fixture.yaml", "--forceall",
                            "results/paper/properties/sdxl/horse21/maps.csv", cwd=paper_tree)
    assert printed.returncode == 0, printed.stderr[-3000:]
    # the property maps stream the SDXL pool too, with its figure maps beside them, and store nothing (issue #19)
    assert re.search(r"property-maps --model \S+ --family sdxl --layers pool .*--image-size 1024 .*--figure-maps ",
                     printed.stdout)
    assert " extract " not in printed.stdout.replace("property-maps", "")
    # the stores that remain are sharded: Table 2 (right)'s, e.g. SDXL practical on Horse-21
    printed = run_snakemake("-n", "-p", "--configfile", "paper-fixture.yaml", "--forceall",
                            "results/paper/scarce/table2/sdxl/practical.csv", cwd=paper_tree)
    assert printed.returncode == 0, printed.stderr[-3000:]
    assert re.search(r"extract --model \S+ --family sdxl --layers practical .*--image-size 1024 ", printed.stdout)
    assert "--shard 4/4" in printed.stdout and "extract-merge --shards 4" in printed.stdout
    # corr_train extracts trn and val anew per visit (correspondence.table1.noise: stream): no store, no extract job
    printed = run_snakemake("-n", "-p", "--configfile", "paper-fixture.yaml", "--forceall",
                            "results/paper/correspondence/table1/sdxl/practical/run/evaluations.csv", cwd=paper_tree)
    assert printed.returncode == 0, printed.stderr[-3000:]
    train = next(line for line in printed.stdout.splitlines() if "corr-train" in line)
    assert "--train-store" not in train and "--val-store" not in train and "/features/" not in train
    for flag, split in (("--train-extract", "trn"), ("--val-extract", "val")):
        assert re.search(rf"{flag} '--model \S+ --family sdxl --layers practical .*--split {split}", train), train
    assert not re.search(r"diffact --log \S+ extract ", printed.stdout)
    # Table 3's paper-generic rows: the paper's Ours-XL layers, channels from the SDXL screen store (complete.json);
    # only for Table 3's models (pgv2's and sd15's compositions have none)
    printed = run_snakemake("-n", "-p", "--configfile", "paper-fixture.yaml", "--forceall",
                            *[f"results/paper/compare/{m}/composition.csv" for m in ("sdxl", "pgv2")], cwd=paper_tree)
    assert printed.returncode == 0, printed.stderr[-3000:]
    compare = [line for line in printed.stdout.splitlines() if "scarce-compare" in line]
    sdxl = next(line for line in compare if "compare/sdxl/" in line)
    assert re.search(r"--paper-generic practical=up-level0-repeat0-vit-block7-out,\S+ "
                     r"--store-layers \S+/compare/sdxl/features-simple/complete\.json ", sdxl)
    # the label-scarce screens read a store of the filtered activations (+ Ours-XL for Table 3), never the pool
    # (issue #19): the filter writes its set file, one unsharded extract writes the store from it
    lines = printed.stdout.splitlines()
    screens = [line for line in lines if "scarce-screen" in line]
    assert len(screens) == 4 and all(re.search(r"--store \S+/compare/(sdxl|pgv2)/features-(simple|complex) ", line)
                                     for line in screens)
    assert not [line for line in lines if "--layers pool" in line]
    assert re.search(r"qualitative-filter .*--set-out \S+/compare/sdxl/filtered\.yaml --also-set practical", printed.stdout)
    assert re.search(r"extract --model \S+ --family sdxl --layers \S+/compare/sdxl/filtered\.yaml .*--dataset-root "
                     r"\S+bedroom\S* .*--out \S+/compare/sdxl/features-complex$", printed.stdout, re.M)
    assert "--paper-generic" not in next(line for line in compare if "compare/pgv2/" in line)


def test_rehearsal_dag_has_every_rule_of_the_paper_dag(paper_tree):
    """config/rehearsal.yaml (the paper profile with counts reduced) plans the same rules as the paper profile, so
    running it runs every rule of the paper DAG at least once. Same fixture trees and tiny models for both."""
    rehearsal = wf.read_profile(ROOT / "config" / "rehearsal.yaml")
    paper = load_yaml(paper_tree / "paper-fixture.yaml")
    for section in ("datasets", "models"):
        for name, entry in rehearsal[section].items():
            entry.update({k: paper[section][name][k] for k in ("root", "source") if k in entry})
            for key in ("revision", "variant"):
                entry.pop(key, None)
    (paper_tree / "rehearsal-fixture.yaml").write_text(yaml.safe_dump(rehearsal, sort_keys=False))
    rules = {}
    for name in ("paper", "rehearsal"):
        done = run_snakemake("-n", "--configfile", f"{name}-fixture.yaml", "--quiet", "rules", cwd=paper_tree)
        assert done.returncode == 0, done.stderr[-3000:]
        rules[name] = set(job_counts(done.stdout + done.stderr))
    # the DiTs are not rehearsed (config/rehearsal.yaml says why): only their rules are missing
    assert rules["paper"] - rules["rehearsal"] == {"practical_screen", "practical_set", "practical_nn",
                                                   "practical_table", "fig_properties_unet_vs_dit"}
    assert rules["rehearsal"] <= rules["paper"]


def test_slurm_profile_dry_runs(paper_tree):
    profile = load_yaml(ROOT / "workflow" / "profiles" / "slurm" / "config.yaml")
    assert profile["executor"] == "slurm"
    done = run_snakemake("-n", "--profile", "workflow/profiles/slurm", "--configfile", "paper-fixture.yaml",
                         "--quiet", "rules", cwd=paper_tree)
    assert done.returncode == 0, done.stderr[-3000:]
    assert job_counts(done.stdout + done.stderr)["extract_shard"] == PAPER_JOBS["extract_shard"]


def test_local_profile_serialises_gpu_jobs():
    profile = load_yaml(ROOT / "workflow" / "profiles" / "default" / "config.yaml")
    assert profile["resources"] == ["gpu=1"]


def test_kubernetes_example_profile_names_its_executor():
    profile = load_yaml(ROOT / "workflow" / "profiles" / "kubernetes" / "config.yaml")
    assert profile["executor"] == "kubernetes" and profile["default-resources"]["gpu_manufacturer"] == "nvidia"


@pytest.mark.parametrize("profile", ["demo", "paper"])
def test_snakemake_lint_is_clean(profile, paper_tree):
    args = ["--lint"] if profile == "demo" else ["--lint", "--configfile", "paper-fixture.yaml"]
    done = run_snakemake(*args, cwd=ROOT if profile == "demo" else paper_tree)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]


# ---- check-data ---------------------------------------------------------------------------------------------

def test_check_data_on_the_fixture_trees(paper_tree, cli, monkeypatch):
    monkeypatch.chdir(paper_tree)
    done = cli("check-data", "--config", "paper-fixture.yaml", "--report", "report.json")
    report = json.loads((paper_tree / "report.json").read_text())
    # DDPM-seg, ADE20K and the tiny models pass; the 2-frame Cityscapes tree is not the official release, and the
    # demo SPair tree has no DHF subset files (the paper profile does not let them be drawn)
    problems = report["problems"]
    cityscapes = [p for p in problems if p.startswith("dataset cityscapes (cityscapes, ")]
    subsets = [p for p in problems
               if p.startswith("dataset spair, spair-trn, spair-val, spair-screen, spair-val-screen (spair, ")]
    assert cityscapes and len(subsets) == 2 and len(cityscapes) + len(subsets) == len(problems), problems
    assert any("leftImg8bit/train" in p and "2975" in p for p in problems)
    for subset in ("test-360", "val-360"):
        assert any(f"SPair subset {subset}: DHF's spair_71k_{subset}.json is in none of" in p for p in subsets)
    assert done.returncode == 1 and f"{len(problems)} problem(s)" in done.stdout
    assert any("subset test-90: no spair_71k_test-90.json" in n for n in report["notes"])


def test_check_data_reports_every_problem_at_once(paper_tree, cli, tmp_path, monkeypatch, tiny_pipeline_dirs):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    config = load_yaml(paper_tree / "paper-fixture.yaml")
    # break one thing of each kind
    spair = tmp_path / "spair"
    shutil.copytree(config["datasets"]["spair"]["root"], spair)
    pair = sorted((spair / "PairAnnotation" / "trn").glob("*.json"))[0]
    record = json.loads(pair.read_text())
    del record["trg_kps"]
    pair.write_text(json.dumps(record))
    horse = tmp_path / "horse_21"
    shutil.copytree(config["datasets"]["horse21"]["root"], horse)
    label = sorted((horse / "real" / "train").glob("*.npy"))[0]
    np.save(label, np.full(np.load(label).shape, 40, np.uint8))  # class 40 of a 21-class dataset
    no_weights = tmp_path / "sdxl-no-weights"
    shutil.copytree(tiny_pipeline_dirs["sdxl"], no_weights)
    for weights in (no_weights / "unet").glob("*.safetensors"):
        weights.unlink()
    for name in ("spair", "spair-trn", "spair-val", "spair-screen", "spair-val-screen"):
        config["datasets"][name]["root"] = str(spair)
    config["datasets"]["horse21"]["root"] = str(horse)
    config["datasets"]["bedroom28"]["root"] = str(tmp_path / "not-downloaded")
    config["models"]["sdxl"]["source"] = str(no_weights)
    config["models"]["pgv2"]["source"] = "playgroundai/playground-v2-1024px-aesthetic"
    config["extraction"]["t"] = "fifty"
    if config.get("segmentation"):
        config["segmentation"]["configs"]["ade20k"] = "config/mmseg/ade20k/{family}_{set}_typo.py"
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(config))
    done = cli("check-data", "--config", path, "--schema", ROOT / "config" / "schema.yaml")
    assert done.returncode == 1
    problems = [line for line in done.stdout.splitlines() if line.startswith("PROBLEM: ")]
    expected = [
        "schema: config extraction.t: 'fifty' is not of type 'integer'",
        f"{pair.name}: field 'trg_kps' is missing",
        f"{label}: class ids [40] out of range",
        f"dataset bedroom28 (ddpmseg, {tmp_path / 'not-downloaded'}): {tmp_path / 'not-downloaded'}: dataset folder does not exist",
        f"model sdxl ({no_weights}): {no_weights}/unet: no weights",
    ]
    for text in expected:
        assert any(text in p for p in problems), (text, problems)
    assert any("playground-v2-1024px-aesthetic" in p and "HF_HUB_OFFLINE=1" in p for p in problems), problems
    assert any(p.startswith("PROBLEM: dataset cityscapes") for p in problems)
    if config.get("segmentation"):
        assert any("mmseg config config/mmseg/ade20k/sdxl_practical_typo.py does not exist" in p for p in problems)
    assert not any(p.startswith(("PROBLEM: model sd15", "PROBLEM: model sd21", "PROBLEM: dataset ade20k")) for p in problems)
    assert f"{len(problems)} problem(s)" in done.stdout.splitlines()[-1]


def test_check_data_of_the_demo_profile_is_ready(cli, monkeypatch, tmp_path):
    """Demo models and datasets are built by the workflow: notes, not problems (run from a folder where they
    are not built yet; relative paths resolve from the working directory, as in the workflow)."""
    (tmp_path / "config").symlink_to(ROOT / "config")
    monkeypatch.chdir(tmp_path)
    done = cli("check-data", "--config", ROOT / "config" / "config.yaml")
    assert done.returncode == 0, done.stdout
    assert "note: model sd15-tiny (results/models/sd15-tiny): a demo model; the workflow builds it" in done.stdout
