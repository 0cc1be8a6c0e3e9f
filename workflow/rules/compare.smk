# Quantitative comparison (paper §5.2-5.3): each activation of the qualitatively filtered pool alone on label-scarce
# segmentation (Tables 4-6 analogues), the ranking per resolution, the generic / specific compositions and Table 3.
# Config → runs, paths and arguments: diffact.workflow.compare.
#
#   results/compare/<model>/filter.csv                 the qualitative filter (§5.1) on the model's candidate pool
#   results/compare/<model>/screen-<scene>.csv         every kept activation alone (scene: simple | complex)
#   results/compare/<model>/rank.csv                   ranking per resolution, the paper's Tables 4-6 values beside
#   results/compare/<model>/composition.csv            generic + specific sets within the channel budget
#   results/compare/<model>/table3/<set>-<scene>.csv   Table 3 runs (set: generic | paper-generic | specific; + .json)
#   paper_figures/<profile>/table4_6_<model>.{csv,tex,md}, paper_figures/<profile>/table3.{csv,tex,md}

rule scarce_filter:
    message: "qualitative filter (§5.1) on the {params.set} candidates of {wildcards.model}"
    input:
        model=lambda w: wf.model_input(config, w.model),
    output:
        report=f"{wf.compare.compare_dir(config)}/{{model}}/filter.csv",
        paper=f"{wf.compare.compare_dir(config)}/{{model}}/filter_vs_paper.csv",
        # the set file of the filtered store, only where the screens read one (scarce.screen.store_set: filtered)
        **wf.compare.filtered_set_output(config),
    wildcard_constraints:
        model=wf.scarce.model_pattern(config),
    params:
        source=lambda w: wf.model_entry(config, w.model)["source"],
        family=lambda w: wf.compare.family(config, w.model),
        set=wf.compare.filter_set(config),
        set_out=lambda w, output: wf.compare.filtered_set_args(config, w.model, output),
    log:
        f"{LOGS}/compare/{{model}}/filter.log",
    threads: stage_threads("default")
    resources: **stage_resources("default")
    conda: ENV
    shell:
        "diffact --log {log} qualitative-filter --model {params.source} --family {params.family} --set {params.set} "
        "--out {output.report} --compare-out {output.paper} {params.set_out}"


# With scarce.screen.store_set: filtered (the paper profile), the screens and Table 3 read a store of the kept
# activations only, not of the whole pool (issue #19); its bytes are the pool store's for those activations.
rule scarce_filtered_store:
    message: "extract the filtered activations of {wildcards.model} on the {wildcards.scene} dataset"
    input:
        layers=f"{wf.compare.compare_dir(config)}/{{model}}/filtered.yaml",
        model=lambda w: wf.model_input(config, w.model),
        data=lambda w: wf.dataset_input(config, wf.scarce.dataset(config, w.scene)),
    output:
        f"{wf.compare.compare_dir(config)}/{{model}}/features-{{scene}}/complete.json",
    wildcard_constraints:
        model=wf.scarce.model_pattern(config),
        scene="simple|complex",
    params:
        args=lambda w: wf.compare.filtered_store_args(config, w.model, w.scene),
        out=lambda w, output: os.path.dirname(output[0]),
    log:
        f"{LOGS}/compare/{{model}}/store-{{scene}}.log",
    threads: stage_threads("extract")
    resources: **stage_resources("extract")
    conda: ENV
    shell:
        "diffact --log {log} extract {params.args} --out {params.out}"


rule scarce_screen:
    message: "label-scarce mIoU of each filtered activation of {wildcards.model} alone, {wildcards.scene} dataset"
    input:
        filter=f"{wf.compare.compare_dir(config)}/{{model}}/filter.csv",
        store=lambda w: wf.compare.screen_store(config, w.model, w.scene),
        data=lambda w: wf.dataset_input(config, wf.scarce.dataset(config, w.scene)),
    output:
        f"{wf.compare.compare_dir(config)}/{{model}}/screen-{{scene}}.csv",
    wildcard_constraints:
        model=wf.scarce.model_pattern(config),
        scene="simple|complex",
    params:
        store=lambda w, input: os.path.dirname(input.store),
        layers=lambda w, input: wf.compare.kept_layers_arg(input.filter),
        dataset=lambda w: wf.scarce.dataset_args(config, w.scene),
        protocol=wf.scarce.protocol_args(config, wf.compare.screen(config), sets=False),
    log:
        f"{LOGS}/compare/{{model}}/screen-{{scene}}.log",
    threads: stage_threads("screen", fallback=wf.scarce.threads(config))
    resources: **stage_resources("screen")
    conda: ENV
    shell:
        "diffact --log {log} scarce-screen --store {params.store} {params.dataset} {params.layers} "
        "{params.protocol} --threads {threads} --out {output}"


rule scarce_compare:
    message: "rank the activations of {wildcards.model} per resolution (Tables 4-6) and compose generic/specific sets"
    input:
        simple=f"{wf.compare.compare_dir(config)}/{{model}}/screen-simple.csv",
        complex=f"{wf.compare.compare_dir(config)}/{{model}}/screen-complex.csv",
        budget=lambda w: wf.compare.budget_stores(config, w.model),
        screen_store=lambda w: wf.compare.paper_generic_stores(config, w.model),
    output:
        rank=f"{wf.compare.compare_dir(config)}/{{model}}/rank.csv",
        composition=f"{wf.compare.compare_dir(config)}/{{model}}/composition.csv",
    wildcard_constraints:
        model=wf.scarce.model_pattern(config),
    params:
        paper=lambda w: wf.compare.paper_model(config, w.model),
        budget=lambda w, input: wf.compare.budget_arg(config, w.model, input.budget),
        resolutions=lambda w: wf.compare.resolutions_arg(config, w.model),
        paper_generic=lambda w, input: wf.compare.paper_generic_arg(config, w.model, input.screen_store),
    log:
        f"{LOGS}/compare/{{model}}/compare.log",
    threads: stage_threads("default")
    resources: **stage_resources("default")
    conda: ENV
    shell:
        "diffact --log {log} scarce-compare --simple {input.simple} --complex {input.complex} "
        "--paper-model {params.paper} {params.budget} {params.resolutions} {params.paper_generic} "
        "--out {output.rank} --composition-out {output.composition} > /dev/null"


rule scarce_table3_run:
    message: "Table 3: label-scarce mIoU of the {wildcards.setting} set of {wildcards.model}, {wildcards.scene} dataset"
    input:
        composition=f"{wf.compare.compare_dir(config)}/{{model}}/composition.csv",
        store=lambda w: wf.compare.screen_store(config, w.model, w.scene),
        data=lambda w: wf.dataset_input(config, wf.scarce.dataset(config, w.scene)),
    output:
        csv=f"{wf.compare.compare_dir(config)}/{{model}}/table3/{{setting}}-{{scene}}.csv",
        json=f"{wf.compare.compare_dir(config)}/{{model}}/table3/{{setting}}-{{scene}}.json",
    wildcard_constraints:
        model=wf.scarce.model_pattern(config),
        setting="paper-generic|generic|specific",
        scene="simple|complex",
    params:
        store=lambda w, input: os.path.dirname(input.store),
        layers=lambda w, input: wf.compare.setting_layers_arg(input.composition, w.setting),
        dataset=lambda w: wf.scarce.dataset_args(config, w.scene),
        protocol=wf.scarce.protocol_args(config, wf.compare.table3(config)),
    log:
        f"{LOGS}/compare/{{model}}/table3-{{setting}}-{{scene}}.log",
    threads: stage_threads("scarce", fallback=wf.scarce.threads(config))
    resources: **stage_resources("scarce")
    conda: ENV
    shell:
        "diffact --log {log} scarce --store {params.store} {params.dataset} {params.layers} "
        "{params.protocol} --threads {threads} --out {output.csv} --summary {output.json}"


# ---- tables (notebooks read results/ only) ----------------------------------------------------------------------

rule table4_6_notebook:
    message: "Tables 4-6 analogue of {wildcards.model}: per-activation mIoU ranked per resolution, the paper's beside"
    input:
        rank=f"{wf.compare.compare_dir(config)}/{{model}}/rank.csv",
        composition=f"{wf.compare.compare_dir(config)}/{{model}}/composition.csv",
        filter=f"{wf.compare.compare_dir(config)}/{{model}}/filter_vs_paper.csv",
        nb="notebooks/tables4_6.py",
    output:
        csv=report(f"{FIGURES}/table4_6_{{model}}.csv", caption="../report/table4_6_notebook.rst", category="Tables 4-6"),
        tex=f"{FIGURES}/table4_6_{{model}}.tex",
        md=f"{FIGURES}/table4_6_{{model}}.md",
    wildcard_constraints:
        model=wf.scarce.model_pattern(config),
    params:
        paper=lambda w: wf.compare.paper_model(config, w.model),
    log:
        f"{LOGS}/figures/table4_6_{{model}}.log",
    threads: stage_threads("notebook")
    resources: **stage_resources("notebook")
    conda: ENV
    shell:
        wf.figures.notebook_shell(
            config, "table4_6_notebook", "-p rank={input.rank}", "-p composition={input.composition}",
            "-p filter_report={input.filter}", "-p model={wildcards.model}", "-p paper_model={params.paper}")


rule table3_notebook:
    message: "Table 3: generic vs specific composition on simple and complex scenes, the paper's beside"
    input:
        runs=wf.compare.t3_runs(config, "json"),
        compositions=wf.compare.t3_compositions(config),
        nb="notebooks/table3.py",
    output:
        csv=report(f"{FIGURES}/table3.csv", caption="../report/table3_notebook.rst", category="Table 3"),
        tex=f"{FIGURES}/table3.tex",
        md=f"{FIGURES}/table3.md",
    params:
        models=wf.list_param(wf.compare.t3_models(config)),
        families=wf.compare.t3_families_param(config),
        compare_dir=lambda w: wf.compare.compare_dir(config),
        paper_generic=wf.compare.t3_plan_json(config),
    log:
        f"{LOGS}/figures/table3.log",
    threads: stage_threads("notebook")
    resources: **stage_resources("notebook")
    conda: ENV
    shell:
        wf.figures.notebook_shell(
            config, "table3_notebook", "-p 'models={params.models}'", "-p 'families={params.families}'",
            "-p compare_dir={params.compare_dir}", "-p paper_generic={params.paper_generic}")
