# Quantitative comparison (paper §5.2-5.3): each activation of the qualitatively filtered pool alone on label-scarce
# segmentation (Tables 4-6 analogues), the ranking per resolution, the generic / specific compositions and Table 3.
# Appends its final outputs to TARGETS (and table outputs to FIGURE_TARGETS). Helpers come from scarce.smk.
#
#   results/compare/<model>/filter.csv                 the qualitative filter (§5.1) on the model's candidate pool
#   results/compare/<model>/screen-<scene>.csv         every kept activation alone (scene: simple | complex)
#   results/compare/<model>/rank.csv                   ranking per resolution, the paper's Tables 4-6 values beside
#   results/compare/<model>/composition.csv            generic + specific sets within the channel budget
#   results/compare/<model>/table3/<set>-<scene>.csv   Table 3 runs (set: generic | paper-generic | specific; + .json)
#   paper_figures/table4_6_<model>.{csv,tex,md}, paper_figures/table3.{csv,tex,md}

SCARCE_SCREEN = SCARCE.get("screen") or {}
SCARCE_CMP = SCARCE.get("compare") or {}
SCARCE_T3 = SCARCE.get("table3") or {}


include: "helpers/compare.smk"


CMP_MODEL = scarce_alt(scarce_models())
if SCARCE and SCARCE_SCREEN:
    for _m in scarce_models():
        TARGETS.append(f"{COMPARE_DIR}/{_m}/rank.csv")
        FIGURE_TARGETS.extend(f"{SCARCE_FIGURES}/table4_6_{_m}.{ext}" for ext in ("csv", "tex", "md"))
    if SCARCE_T3 and cmp_t3_models():
        TARGETS.extend(f"{COMPARE_DIR}/{m}/table3/{s}-{c}.csv" for m in cmp_t3_models()
                       for s in cmp_t3_settings(m) for c in SCARCE_SCENES)
        FIGURE_TARGETS.extend(f"{SCARCE_FIGURES}/table3.{ext}" for ext in ("csv", "tex", "md"))


rule scarce_filter:
    message: "qualitative filter (§5.1) on the {params.set} candidates of {wildcards.model}"
    input:
        model=lambda w: wf.model_input(config, w.model),
    output:
        report=f"{COMPARE_DIR}/{{model}}/filter.csv",
        paper=f"{COMPARE_DIR}/{{model}}/filter_vs_paper.csv",
    wildcard_constraints:
        model=CMP_MODEL,
    params:
        source=lambda w: wf.model_entry(config, w.model)["source"],
        family=lambda w: cmp_family(w.model),
        set=SCARCE_SCREEN.get("filter_set", "pool"),
    log:
        f"{LOGS}/compare/{{model}}/filter.log",
    threads: stage_threads("default")
    resources: **stage_resources("default")
    conda: ENV
    shell:
        "diffact --log {log} qualitative-filter --model {params.source} --family {params.family} --set {params.set} "
        "--out {output.report} --compare-out {output.paper}"


rule scarce_screen:
    message: "label-scarce mIoU of each filtered activation of {wildcards.model} alone, {wildcards.scene} dataset"
    input:
        filter=f"{COMPARE_DIR}/{{model}}/filter.csv",
        store=lambda w: cmp_screen_store(w.model, w.scene),
        data=lambda w: wf.dataset_input(config, scarce_dataset(w.scene)),
    output:
        f"{COMPARE_DIR}/{{model}}/screen-{{scene}}.csv",
    wildcard_constraints:
        model=CMP_MODEL,
        scene="simple|complex",
    params:
        store=lambda w, input: os.path.dirname(input.store),
        layers=lambda w, input: csv_layers_arg(input.filter, "layer", "kept", "True"),
        dataset=lambda w: scarce_dataset_args(w.scene),
        protocol=scarce_protocol_args(SCARCE_SCREEN.get("splits", 5), sets=False) if SCARCE else "",
    log:
        f"{LOGS}/compare/{{model}}/screen-{{scene}}.log",
    threads: stage_threads("screen", fallback=scarce_protocol()["threads"])
    resources: **stage_resources("screen")
    conda: ENV
    shell:
        "diffact --log {log} scarce-screen --store {params.store} {params.dataset} --layers {params.layers} "
        "{params.protocol} --threads {threads} --out {output}"


rule scarce_compare:
    message: "rank the activations of {wildcards.model} per resolution (Tables 4-6) and compose generic/specific sets"
    input:
        simple=f"{COMPARE_DIR}/{{model}}/screen-simple.csv",
        complex=f"{COMPARE_DIR}/{{model}}/screen-complex.csv",
        budget=lambda w: cmp_budget_store(w.model),
        screen_store=lambda w: cmp_screen_store(w.model, "simple") if not cmp_paper_generic_unavailable(w.model) else [],
    output:
        rank=f"{COMPARE_DIR}/{{model}}/rank.csv",
        composition=f"{COMPARE_DIR}/{{model}}/composition.csv",
    wildcard_constraints:
        model=CMP_MODEL,
    params:
        paper=lambda w: cmp_paper_model(w.model),
        budget=lambda w, input: cmp_budget_arg(w.model, input.budget),
        resolutions=lambda w: cmp_resolutions_arg(w.model),
        paper_generic=lambda w, input: cmp_paper_generic_arg(w.model, input.screen_store),
    log:
        f"{LOGS}/compare/{{model}}/compare.log",
    threads: stage_threads("default")
    resources: **stage_resources("default")
    conda: ENV
    shell:
        "diffact --log {log} scarce-compare --simple {input.simple} --complex {input.complex} "
        "--paper-model {params.paper} --budget {params.budget} {params.resolutions} {params.paper_generic} "
        "--out {output.rank} --composition-out {output.composition} > /dev/null"


rule scarce_table3_run:
    message: "Table 3: label-scarce mIoU of the {wildcards.setting} set of {wildcards.model}, {wildcards.scene} dataset"
    input:
        composition=f"{COMPARE_DIR}/{{model}}/composition.csv",
        store=lambda w: cmp_screen_store(w.model, w.scene),
        data=lambda w: wf.dataset_input(config, scarce_dataset(w.scene)),
    output:
        csv=f"{COMPARE_DIR}/{{model}}/table3/{{setting}}-{{scene}}.csv",
        json=f"{COMPARE_DIR}/{{model}}/table3/{{setting}}-{{scene}}.json",
    wildcard_constraints:
        model=CMP_MODEL,
        setting="paper-generic|generic|specific",
        scene="simple|complex",
    params:
        store=lambda w, input: os.path.dirname(input.store),
        layers=lambda w, input: csv_layers_arg(input.composition, "activation", "set", w.setting),
        dataset=lambda w: scarce_dataset_args(w.scene),
        protocol=scarce_protocol_args(SCARCE_T3.get("splits", 5)) if SCARCE else "",
    log:
        f"{LOGS}/compare/{{model}}/table3-{{setting}}-{{scene}}.log",
    threads: stage_threads("scarce", fallback=scarce_protocol()["threads"])
    resources: **stage_resources("scarce")
    conda: ENV
    shell:
        "diffact --log {log} scarce --store {params.store} {params.dataset} --layers {params.layers} "
        "{params.protocol} --threads {threads} --out {output.csv} --summary {output.json}"


# ---- tables (notebooks read results/ only) ----------------------------------------------------------------------

rule table4_6_notebook:
    message: "Tables 4-6 analogue of {wildcards.model}: per-activation mIoU ranked per resolution, the paper's beside"
    input:
        rank=f"{COMPARE_DIR}/{{model}}/rank.csv",
        composition=f"{COMPARE_DIR}/{{model}}/composition.csv",
        filter=f"{COMPARE_DIR}/{{model}}/filter_vs_paper.csv",
        nb="notebooks/tables4_6.py",
    output:
        csv=report(f"{SCARCE_FIGURES}/table4_6_{{model}}.csv", caption="../report/table4_6_notebook.rst", category="Tables 4-6"),
        tex=f"{SCARCE_FIGURES}/table4_6_{{model}}.tex",
        md=f"{SCARCE_FIGURES}/table4_6_{{model}}.md",
    wildcard_constraints:
        model=CMP_MODEL,
    params:
        paper=lambda w: cmp_paper_model(w.model),
        rulename="table4_6_notebook",
        executed=lambda w: f"{RESULTS}/notebooks/table4_6_{w.model}.ipynb",
        out_stem=lambda w, output: output.csv.removesuffix(".csv"),
    log:
        f"{LOGS}/figures/table4_6_{{model}}.log",
    threads: stage_threads("notebook")
    resources: **stage_resources("notebook")
    conda: ENV
    shell:
        "diffact --log {log} notebook {input.nb} --rule {params.rulename} --inputs {input} --outputs {output} --executed {params.executed} "
        "-p rank={input.rank} -p composition={input.composition} -p filter_report={input.filter} "
        "-p model={wildcards.model} -p paper_model={params.paper} -p out_stem={params.out_stem}"


rule table3_notebook:
    message: "Table 3: generic vs specific composition on simple and complex scenes, the paper's beside"
    input:
        runs=[f"{COMPARE_DIR}/{m}/table3/{s}-{c}.json" for m in cmp_t3_models() for s in cmp_t3_settings(m)
              for c in SCARCE_SCENES],
        compositions=[f"{COMPARE_DIR}/{m}/composition.csv" for m in cmp_t3_models()],
        nb="notebooks/table3.py",
    output:
        csv=report(f"{SCARCE_FIGURES}/table3.csv", caption="../report/table3_notebook.rst", category="Table 3"),
        tex=f"{SCARCE_FIGURES}/table3.tex",
        md=f"{SCARCE_FIGURES}/table3.md",
    params:
        models=wf.list_param(cmp_t3_models()),
        families="{" + ",".join(f"{m}: {cmp_family(m)}" for m in cmp_t3_models()) + "}",
        rulename="table3_notebook",
        executed=f"{RESULTS}/notebooks/table3.ipynb",
        out_stem=lambda w, output: output.csv.removesuffix(".csv"),
        compare_dir=lambda w: COMPARE_DIR,
        paper_generic=cmp_t3_plan_json(),
    log:
        f"{LOGS}/figures/table3.log",
    threads: stage_threads("notebook")
    resources: **stage_resources("notebook")
    conda: ENV
    shell:
        "diffact --log {log} notebook {input.nb} --rule {params.rulename} --inputs {input} --outputs {output} --executed {params.executed} "
        "-p 'models={params.models}' -p 'families={params.families}' -p compare_dir={params.compare_dir} -p out_stem={params.out_stem} "
        "-p paper_generic={params.paper_generic}"
