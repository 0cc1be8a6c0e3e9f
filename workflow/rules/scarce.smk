# Label-scarce segmentation (paper §2.10; pixel-classifier ensemble, DDPM-seg protocol): Table 2 (right). Config →
# runs, paths and arguments: diffact.workflow.scarce (the demo DDPM-seg datasets are made in data.smk).
#
#   results/scarce/table2/<model>/<set>.csv      one row per random split (+ .json: mean ± std, per-class IoU)
#   results/scarce/table2/combined/<name>.csv    the same for several stores concatenated (Ours-XL-t)
#   paper_figures/<profile>/table2_right.{csv,tex,md}  Table 2 (right) analogue beside the paper's numbers
#
# Config: the `scarce` section (config/config.yaml documents each key with its paper value). The simple and
# complex datasets are `datasets` entries of kind ddpmseg; a real DDPM-seg folder whose name does not say which
# dataset it is (horse_21, bedroom_28) takes `name: horse_21` in its entry.


rule scarce_set:
    message: "label-scarce mIoU of {wildcards.model} {wildcards.layerset} on the simple dataset"
    input:
        stores=lambda w: wf.scarce.t2_stores(config, w.model, w.layerset),
        data=lambda w: wf.dataset_input(config, wf.scarce.dataset(config, "simple")),
    output:
        csv=f"{wf.scarce.table2_dir(config)}/{{model}}/{{layerset}}.csv",
        json=f"{wf.scarce.table2_dir(config)}/{{model}}/{{layerset}}.json",
    wildcard_constraints:
        model=wf.alternatives([*wf.scarce.models(config), wf.scarce.COMBINED]),
        layerset="[A-Za-z0-9_.-]+",
    params:
        sources=lambda w, input: wf.scarce.t2_sources_arg(config, w.model, w.layerset, input.stores),
        dataset=lambda w: wf.scarce.dataset_args(config, "simple"),
        protocol=wf.scarce.protocol_args(config, wf.scarce.table2(config)),
    log:
        f"{LOGS}/scarce/table2/{{model}}-{{layerset}}.log",
    threads: stage_threads("scarce", fallback=wf.scarce.threads(config))
    resources: **stage_resources("scarce")
    conda: ENV
    shell:
        "diffact --log {log} scarce {params.sources} {params.dataset} "
        "{params.protocol} --threads {threads} --out {output.csv} --summary {output.json}"


rule table2_right_notebook:
    message: "Table 2 (right): label-scarce mIoU of the named sets beside the paper's"
    input:
        runs=wf.scarce.t2_json(config),
        nb="notebooks/table2_right.py",
    output:
        csv=report(f"{FIGURES}/table2_right.csv", caption="../report/table2_right_notebook.rst", category="Table 2"),
        tex=f"{FIGURES}/table2_right.tex",
        md=f"{FIGURES}/table2_right.md",
    params:
        plan=wf.scarce.t2_plan_json(config),
        dataset=wf.scarce.section(config).get("simple", ""),
        results_dir=lambda w: wf.scarce.table2_dir(config),
    log:
        f"{LOGS}/figures/table2_right.log",
    threads: stage_threads("notebook")
    resources: **stage_resources("notebook")
    conda: ENV
    shell:
        wf.figures.notebook_shell(
            config, "table2_right_notebook", "-p plan={params.plan}", "-p results_dir={params.results_dir}",
            "-p dataset={params.dataset}")
