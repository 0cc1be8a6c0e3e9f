# Semantic segmentation with mmsegmentation (paper §2.9, Table 2 left): a UPerHead segmentor on frozen diffusion
# activations, trained with mmengine's Runner and scored with mmseg's IoU metric. Appends its final outputs to TARGETS
# (and the table outputs to FIGURE_TARGETS).
#
#   <root>/dataset.json                                   demo dataset in ADE20K's layout (datasets.<name>.build: ade)
#   results/segmentation/<dataset>/<model>/<set>.csv      one run: mIoU (last and best validation), per-class IoU,
#                                                         iterations, s/iter
#   results/segmentation/<dataset>/<model>/<set>.history.csv  its validations: iteration, mIoU, aAcc, per class
#   results/segmentation/<dataset>/<model>/<set>/         its mmengine work dir (config dump, logs, checkpoints)
#   results/segmentation/<dataset>/combined/<name>.csv    a multi-model run (Ours-XL-t, App. B.4)
#   results/segmentation/<dataset>/constant_baseline.csv  the most frequent training class everywhere
#   paper_figures/table2_left.{csv,tex,md}                Table 2 (left) analogue beside the paper's numbers
#
# Config: the `segmentation` section (config/config.yaml documents each key); config → runs, paths and arguments
# lives in diffact.tasks.segmentation.plan.

from diffact.tasks.segmentation import plan as segplan

SEG = segplan.section(config)
SEG_TABLE = f"{PAPER_FIGURES}/table2_left"

if SEG:
    TARGETS.extend(segplan.targets(config))
    FIGURE_TARGETS.extend(f"{SEG_TABLE}.{ext}" for ext in ("csv", "tex", "md"))


for _name, _entry in segplan.demo_datasets(config).items():

    rule:
        name: f"demo_ade_data_{_name.replace('-', '_')}"
        message: f"make the demo segmentation dataset {_name} (ADE20K layout)"
        output:
            f"{_entry['root']}/{segplan.DEMO_MARKER}",
        params:
            root=lambda w, output: os.path.dirname(output[0]),
            seed=_entry.get("seed", config["seed"]),
            size=(SEG.get("demo_data") or {}).get("size", 64),
            train=(SEG.get("demo_data") or {}).get("train", 48),
            val=(SEG.get("demo_data") or {}).get("val", 16),
        log:
            f"{LOGS}/data/{_name}.log",
        threads: stage_threads("default")
        resources: **stage_resources("default")
        conda: ENV
        shell:
            "diffact --log {log} make-demo-ade --out {params.root} --seed {params.seed} --size {params.size} "
            "--train {params.train} --val {params.val}"


rule seg_train:
    message: "train + evaluate the {wildcards.model} {wildcards.layerset} segmentor on {wildcards.dataset}"
    input:
        data=lambda w: segplan.data_input(config, w.dataset),
        models=lambda w: segplan.model_inputs(config, w.model, w.layerset),
        config=lambda w: segplan.mmseg_config(config, w.dataset, w.model, w.layerset),
    output:
        csv=f"{RESULTS}/segmentation/{{dataset}}/{{model}}/{{layerset}}.csv",
        history=f"{RESULTS}/segmentation/{{dataset}}/{{model}}/{{layerset}}.history.csv",
    wildcard_constraints:
        dataset=segplan.alternatives(segplan.datasets(config)),
        model=segplan.alternatives([*segplan.models(config), segplan.COMBINED]),
        layerset="[A-Za-z0-9_-]+",
    params:
        work=lambda w, output: os.path.splitext(output.csv)[0],
        args=lambda w: segplan.seg_train_args(config, w.dataset, w.model, w.layerset),
    log:
        f"{LOGS}/segmentation/{{dataset}}-{{model}}-{{layerset}}.log",
    threads: stage_threads("segmentation", fallback=SEG.get("threads"))
    resources: **stage_resources("segmentation")
    conda: ENV
    shell:
        "diffact --log {log} seg-train {input.config} --work-dir {params.work} --out {output.csv} "
        "--history {output.history} {params.args} --threads {threads}"


rule seg_baseline:
    message: "constant-class baseline on {wildcards.dataset}"
    input:
        data=lambda w: segplan.data_input(config, w.dataset),
    output:
        csv=f"{RESULTS}/segmentation/{{dataset}}/constant_baseline.csv",
    wildcard_constraints:
        dataset=segplan.alternatives(segplan.datasets(config)),
    params:
        kind=lambda w: segplan.kind(config, w.dataset),
        root=lambda w: segplan.root(config, w.dataset),
    log:
        f"{LOGS}/segmentation/{{dataset}}-constant_baseline.log",
    threads: stage_threads("default")
    resources: **stage_resources("default")
    conda: ENV
    shell:
        "diffact --log {log} seg-baseline --layout {params.kind} --root {params.root} --out {output.csv} "
        "--label dataset={wildcards.dataset}"


rule table2_left_notebook:
    message: "Table 2 (left): segmentation mIoU of the named sets beside the paper's"
    input:
        runs=segplan.run_csvs(config),
        histories=segplan.history_csvs(config),
        baselines=segplan.baseline_csvs(config),
        nb="notebooks/table2_left.py",
    output:
        csv=report(f"{SEG_TABLE}.csv", caption="../report/table2_left_notebook.rst", category="Table 2"),
        tex=f"{SEG_TABLE}.tex",
        md=f"{SEG_TABLE}.md",
    params:
        plan=segplan.table_plan_arg(config),
        executed=f"{RESULTS}/notebooks/table2_left.ipynb",
        stem=lambda w, output: os.path.splitext(output.csv)[0],
        rulename="table2_left_notebook",
    log:
        f"{LOGS}/figures/table2_left.log",
    threads: stage_threads("notebook")
    resources: **stage_resources("notebook")
    conda: ENV
    shell:
        "diffact --log {log} notebook {input.nb} --rule {params.rulename} --inputs {input} --outputs {output} "
        "--executed {params.executed} -p plan={params.plan} -p out_stem={params.stem}"
