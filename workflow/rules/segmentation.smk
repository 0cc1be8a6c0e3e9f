# Semantic segmentation with mmsegmentation (paper §2.9, Table 2 left): a UPerHead segmentor on frozen diffusion
# activations, trained with mmengine's Runner and scored with mmseg's IoU metric.
#
#   results/segmentation/<dataset>/<model>/<set>.csv      one run: mIoU (last and best validation), per-class IoU,
#                                                         iterations, s/iter
#   results/segmentation/<dataset>/<model>/<set>.history.csv  its validations: iteration, mIoU, aAcc, per class
#   results/segmentation/<dataset>/<model>/<set>/         its mmengine work dir (config dump, logs, checkpoints)
#   results/segmentation/<dataset>/combined/<name>.csv    a multi-model run (Ours-XL-t, App. B.4)
#   results/segmentation/<dataset>/constant_baseline.csv  the most frequent training class everywhere
#   paper_figures/<profile>/table2_left.{csv,tex,md}      Table 2 (left) analogue beside the paper's numbers
#
# Config: the `segmentation` section (config/config.yaml documents each key); config → runs, paths and arguments
# lives in diffact.workflow.segmentation (the demo ADE20K-layout datasets are made in data.smk).


rule seg_train:
    message: "train + evaluate the {wildcards.model} {wildcards.layerset} segmentor on {wildcards.dataset}"
    input:
        data=lambda w: wf.segmentation.data_input(config, w.dataset),
        models=lambda w: wf.segmentation.model_inputs(config, w.model, w.layerset),
        config=lambda w: wf.segmentation.mmseg_config(config, w.dataset, w.model, w.layerset),
    output:
        csv=f"{RESULTS}/segmentation/{{dataset}}/{{model}}/{{layerset}}.csv",
        history=f"{RESULTS}/segmentation/{{dataset}}/{{model}}/{{layerset}}.history.csv",
    wildcard_constraints:
        dataset=wf.segmentation.dataset_pattern(config),
        model=wf.segmentation.model_pattern(config),
        layerset="[A-Za-z0-9_-]+",
    params:
        work=lambda w, output: os.path.splitext(output.csv)[0],
        args=lambda w: wf.segmentation.seg_train_args(config, w.dataset, w.model, w.layerset),
    log:
        f"{LOGS}/segmentation/{{dataset}}-{{model}}-{{layerset}}.log",
    threads: stage_threads("segmentation", fallback=wf.segmentation.section(config).get("threads"))
    resources: **stage_resources("segmentation")
    conda: ENV
    shell:
        "diffact --log {log} seg-train {input.config} --work-dir {params.work} --out {output.csv} "
        "--history {output.history} {params.args} --threads {threads}"


rule seg_baseline:
    message: "constant-class baseline on {wildcards.dataset}"
    input:
        data=lambda w: wf.segmentation.data_input(config, w.dataset),
    output:
        csv=f"{RESULTS}/segmentation/{{dataset}}/constant_baseline.csv",
    wildcard_constraints:
        dataset=wf.segmentation.dataset_pattern(config),
    params:
        kind=lambda w: wf.segmentation.kind(config, w.dataset),
        root=lambda w: wf.segmentation.root(config, w.dataset),
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
        runs=wf.segmentation.run_csvs(config),
        histories=wf.segmentation.history_csvs(config),
        baselines=wf.segmentation.baseline_csvs(config),
        nb="notebooks/table2_left.py",
    output:
        csv=report(f"{FIGURES}/table2_left.csv", caption="../report/table2_left_notebook.rst", category="Table 2"),
        tex=f"{FIGURES}/table2_left.tex",
        md=f"{FIGURES}/table2_left.md",
    params:
        plan=wf.segmentation.table_plan_arg(config),
    log:
        f"{LOGS}/figures/table2_left.log",
    threads: stage_threads("notebook")
    resources: **stage_resources("notebook")
    conda: ENV
    shell:
        wf.figures.notebook_shell(config, "table2_left_notebook", "-p plan={params.plan}")
