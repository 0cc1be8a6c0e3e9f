# Label-scarce segmentation (paper §2.10; pixel-classifier ensemble, DDPM-seg protocol): the demo segmentation
# datasets and Table 2 (right). Appends its final outputs to TARGETS (and table outputs to FIGURE_TARGETS).
#
#   <root>/dataset.json                          demo dataset (datasets.<name>.build: simple|complex), DDPM-seg layout
#   results/scarce/table2/<model>/<set>.csv      one row per random split (+ .json: mean ± std, per-class IoU)
#   results/scarce/table2/combined/<name>.csv    the same for several stores concatenated (Ours-XL-t)
#   paper_figures/table2_right.{csv,tex,md}      Table 2 (right) analogue beside the paper's numbers
#
# Config: the `scarce` section (config/config.yaml documents each key with its paper value). The simple and
# complex datasets are `datasets` entries of kind ddpmseg; a real DDPM-seg folder whose name does not say which
# dataset it is (horse_21, bedroom_28) takes `name: horse_21` in its entry. Shared helpers for compare.smk live
# here too (scarce.smk is included first).

import json
import shlex

from diffact.analysis import compare as _compare

SCARCE = config.get("scarce") or {}
SCARCE_DIR = f"{RESULTS}/scarce"
COMPARE_DIR = f"{RESULTS}/compare"
SCARCE_FIGURES = PAPER_FIGURES
SCARCE_SCENES = ("simple", "complex")

# The paper's protocol (docs/paper.md §2.10); the config's `scarce.protocol` overrides any of these.
SCARCE_PROTOCOL_DEFAULTS = {"size": 256, "members": 10, "epochs": 100, "pixel_rate": 1.0, "batch_size": 64,
                            "lr": 1e-3, "seed": 0, "threads": 1, "device": "cpu", "buffer_mb": 1024,
                            "upsample": "nearest-bilinear"}


include: "helpers/scarce.smk"


# ---- demo segmentation datasets (DDPM-seg layout, drawn from shipped images) -----------------------------------

SEG_DEMO = {name: entry for name, entry in config["datasets"].items()
            if entry.get("kind") == "ddpmseg" and entry.get("build") in ("simple", "complex")}
_SEG_DEMO_DATA = SCARCE.get("demo_data") or {}

for _name, _entry in SEG_DEMO.items():
    rule:
        name: f"demo_seg_data_{_name.replace('-', '_')}"
        message: f"make the demo {_entry['build']} segmentation dataset {_name} (DDPM-seg layout)"
        output:
            f"{_entry['root']}/{wf.DEMO_DATA_MARKERS['ddpmseg']}",
        params:
            kind=_entry["build"],
            root=lambda w, output: os.path.dirname(output[0]),
            seed=_entry.get("seed", config["seed"]),
            size=config["extraction"]["image_size"],
            train=_SEG_DEMO_DATA.get("train", 8),
            test=_SEG_DEMO_DATA.get("test", 6),
        log:
            f"{LOGS}/data/{_name}.log",
        threads: stage_threads("default")
        resources: **stage_resources("default")
        conda: ENV
        shell:
            "diffact --log {log} make-demo-seg --kind {params.kind} --out {params.root} --seed {params.seed} "
            "--size {params.size} --train {params.train} --test {params.test}"


# ---- Table 2 (right): named layer sets alone on the simple dataset ---------------------------------------------

SCARCE_T2 = SCARCE.get("table2") or {}
SCARCE_COMBINED = "combined"  # the model wildcard of a Table 2 entry made of several stores (table2.combined)
SCARCE_T2_DIR = f"{SCARCE_DIR}/table2"


if SCARCE and SCARCE_T2:
    TARGETS.extend(f"{SCARCE_T2_DIR}/{m}/{s}.csv" for m, s in scarce_t2_runs())
    FIGURE_TARGETS.extend(f"{SCARCE_FIGURES}/table2_right.{ext}" for ext in ("csv", "tex", "md"))


rule scarce_set:
    message: "label-scarce mIoU of {wildcards.model} {wildcards.layerset} on the simple dataset ({params.splits} splits)"
    input:
        stores=lambda w: scarce_t2_stores(w.model, w.layerset),
        data=lambda w: wf.dataset_input(config, scarce_dataset("simple")),
    output:
        csv=f"{SCARCE_T2_DIR}/{{model}}/{{layerset}}.csv",
        json=f"{SCARCE_T2_DIR}/{{model}}/{{layerset}}.json",
    wildcard_constraints:
        model=scarce_alt([*scarce_models(), SCARCE_COMBINED]),
        layerset="[A-Za-z0-9_.-]+",
    params:
        sources=lambda w, input: scarce_t2_sources_arg(w.model, w.layerset, input.stores),
        dataset=lambda w: scarce_dataset_args("simple"),
        splits=SCARCE_T2.get("splits", 5),
        protocol=lambda w: scarce_protocol_args(SCARCE_T2.get("splits", 5)),
    log:
        f"{LOGS}/scarce/table2/{{model}}-{{layerset}}.log",
    threads: stage_threads("scarce", fallback=scarce_protocol()["threads"])
    resources: **stage_resources("scarce")
    conda: ENV
    shell:
        "diffact --log {log} scarce {params.sources} {params.dataset} "
        "{params.protocol} --threads {threads} --out {output.csv} --summary {output.json}"


rule table2_right_notebook:
    message: "Table 2 (right): label-scarce mIoU of the named sets beside the paper's"
    input:
        runs=[f"{SCARCE_T2_DIR}/{m}/{s}.json" for m, s in scarce_t2_runs()],
        nb="notebooks/table2_right.py",
    output:
        csv=report(f"{SCARCE_FIGURES}/table2_right.csv", caption="../report/table2_right_notebook.rst", category="Table 2"),
        tex=f"{SCARCE_FIGURES}/table2_right.tex",
        md=f"{SCARCE_FIGURES}/table2_right.md",
    params:
        plan=scarce_t2_plan_json() if SCARCE and SCARCE_T2 else "'[]'",
        dataset=SCARCE.get("simple", ""),
        rulename="table2_right_notebook",
        executed=f"{RESULTS}/notebooks/table2_right.ipynb",
        out_stem=lambda w, output: output.csv.removesuffix(".csv"),
        results_dir=lambda w: SCARCE_T2_DIR,
    log:
        f"{LOGS}/figures/table2_right.log",
    threads: stage_threads("notebook")
    resources: **stage_resources("notebook")
    conda: ENV
    shell:
        "diffact --log {log} notebook {input.nb} --rule {params.rulename} --inputs {input} --outputs {output} --executed {params.executed} "
        "-p plan={params.plan} -p results_dir={params.results_dir} -p dataset={params.dataset} "
        "-p out_stem={params.out_stem}"
