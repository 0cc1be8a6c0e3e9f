# Label-scarce segmentation (paper §2.10; pixel-classifier ensemble, DDPM-seg protocol): the demo segmentation
# datasets and Table 2 (right). Appends its final outputs to TARGETS (and table outputs to FIGURE_TARGETS).
#
#   <root>/dataset.json                          demo dataset (datasets.<name>.build: simple|complex), DDPM-seg layout
#   results/scarce/table2/<model>/<set>.csv      one row per random split (+ .json: mean ± std, per-class IoU)
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
SCARCE_FIGURES = "paper_figures"
SCARCE_SCENES = ("simple", "complex")

# The paper's protocol (spec §2.10); the config's `scarce.protocol` overrides any of these.
SCARCE_PROTOCOL_DEFAULTS = {"size": 256, "members": 10, "epochs": 100, "pixel_rate": 1.0, "batch_size": 64,
                            "lr": 1e-3, "seed": 0, "threads": 1, "device": "cpu", "buffer_mb": 1024}


def scarce_protocol():
    return {**SCARCE_PROTOCOL_DEFAULTS, **(SCARCE.get("protocol") or {})}


def scarce_protocol_args(splits):
    """`diffact scarce` / `scarce-screen` protocol flags (everything but store, dataset, layers and threads)."""
    p = scarce_protocol()
    return (f"--splits {int(splits)} --seed {p['seed']} --size {p['size']} --models {p['members']} "
            f"--epochs {p['epochs']} --batch-size {p['batch_size']} --lr {p['lr']} --pixel-rate {p['pixel_rate']} "
            f"--buffer-mb {p['buffer_mb']} --device {p['device']}")


def scarce_dataset(scene):
    """The dataset name configured for a scene (simple | complex)."""
    return SCARCE[scene]


def scarce_dataset_args(scene):
    entry = wf.dataset_entry(config, scarce_dataset(scene))
    args = ["--dataset", entry["root"]] + (["--dataset-name", entry["name"]] if entry.get("name") else [])
    return " ".join(shlex.quote(str(a)) for a in args)


def scarce_models():
    return list(SCARCE.get("models", []))


def scarce_py(code, *args):
    """Shell fragment: the output of a short Python snippet run inside the job (it reads a file made upstream,
    e.g. which layers a store holds or the qualitative filter kept); keeps rules on the plain `diffact` CLI."""
    return '"$(python -c ' + shlex.quote(code) + "".join(" " + shlex.quote(str(a)) for a in args) + ')"'


def store_layers_arg(done_file):
    """Every layer of a feature store (its complete.json), comma-joined, in the store's forward order."""
    return scarce_py('import json, sys; print(",".join(json.load(open(sys.argv[1]))["layers"]))', done_file)


def csv_layers_arg(path, column, where, value):
    """Comma-joined `column` of the CSV rows whose `where` column equals `value` (as text)."""
    return scarce_py('import sys, pandas as pd; f = pd.read_csv(sys.argv[1]); '
                     'print(",".join(f.loc[f[sys.argv[3]].astype(str) == sys.argv[4], sys.argv[2]].astype(str)))',
                     path, column, where, value)


def scarce_alt(names):
    import re

    return "|".join(re.escape(n) for n in names) or "^$"


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
            root=_entry["root"],
            seed=_entry.get("seed", config["seed"]),
            size=config["extraction"]["image_size"],
            train=_SEG_DEMO_DATA.get("train", 8),
            test=_SEG_DEMO_DATA.get("test", 6),
        log:
            f"{LOGS}/data/{_name}.log",
        conda: ENV
        shell:
            "diffact --log {log} make-demo-seg --kind {params.kind} --out {params.root} --seed {params.seed} "
            "--size {params.size} --train {params.train} --test {params.test}"


# ---- Table 2 (right): named layer sets alone on the simple dataset ---------------------------------------------

SCARCE_T2 = SCARCE.get("table2") or {}
SCARCE_T2_DIR = f"{SCARCE_DIR}/table2"


def scarce_t2_unavailable(model, layer_set):
    return ((SCARCE_T2.get("unavailable") or {}).get(model) or {}).get(layer_set, "")


def scarce_t2_runs():
    """(model, layer set) pairs of Table 2 that run on this profile."""
    return [(m, s) for m in scarce_models() for s in SCARCE_T2.get("layer_sets", []) if not scarce_t2_unavailable(m, s)]


if SCARCE and SCARCE_T2:
    TARGETS.extend(f"{SCARCE_T2_DIR}/{m}/{s}.csv" for m, s in scarce_t2_runs())
    FIGURE_TARGETS.extend(f"{SCARCE_FIGURES}/table2_right.{ext}" for ext in ("csv", "tex", "md"))


rule scarce_set:
    message: "label-scarce mIoU of {wildcards.model} {wildcards.layerset} on the simple dataset ({params.splits} splits)"
    input:
        store=lambda w: wf.store_done(config, scarce_dataset("simple"), w.model, w.layerset),
        data=lambda w: wf.dataset_input(config, scarce_dataset("simple")),
    output:
        csv=f"{SCARCE_T2_DIR}/{{model}}/{{layerset}}.csv",
        json=f"{SCARCE_T2_DIR}/{{model}}/{{layerset}}.json",
    wildcard_constraints:
        model=scarce_alt(scarce_models()),
        layerset="[A-Za-z0-9_-]+",
    params:
        store=lambda w, input: os.path.dirname(input.store),
        layers=lambda w, input: store_layers_arg(input.store),
        dataset=lambda w: scarce_dataset_args("simple"),
        splits=SCARCE_T2.get("splits", 5),
        protocol=lambda w: scarce_protocol_args(SCARCE_T2.get("splits", 5)),
    log:
        f"{LOGS}/scarce/table2/{{model}}-{{layerset}}.log",
    threads: scarce_protocol()["threads"]
    conda: ENV
    shell:
        "diffact --log {log} scarce --store {params.store} {params.dataset} --layers {params.layers} "
        "{params.protocol} --threads {threads} --out {output.csv} --summary {output.json}"


def scarce_t2_plan_json():
    """Every Table 2 entry of the profile for the notebook: model, family, layer set, why it cannot run."""
    plan = [{"model": m, "family": wf.model_entry(config, m)["family"], "layer_set": s,
             "unavailable": scarce_t2_unavailable(m, s)} for m in scarce_models() for s in SCARCE_T2.get("layer_sets", [])]
    return shlex.quote(json.dumps(plan))


rule table2_right_notebook:
    message: "Table 2 (right): label-scarce mIoU of the named sets beside the paper's"
    input:
        runs=[f"{SCARCE_T2_DIR}/{m}/{s}.json" for m, s in scarce_t2_runs()],
        nb="notebooks/table2_right.py",
        theme="src/diffact/viz/theme.py",
    output:
        csv=f"{SCARCE_FIGURES}/table2_right.csv",
        tex=f"{SCARCE_FIGURES}/table2_right.tex",
        md=f"{SCARCE_FIGURES}/table2_right.md",
    params:
        plan=scarce_t2_plan_json() if SCARCE and SCARCE_T2 else "'[]'",
        dataset=SCARCE.get("simple", ""),
    log:
        f"{LOGS}/figures/table2_right.log",
    conda: ENV
    shell:
        "diffact --log {log} notebook {input.nb} --executed {RESULTS}/notebooks/table2_right.ipynb "
        "-p plan={params.plan} -p results_dir={SCARCE_T2_DIR} -p dataset={params.dataset} "
        "-p out_stem={SCARCE_FIGURES}/table2_right"
