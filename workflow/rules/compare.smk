# Quantitative comparison (paper §5.2-5.3): each activation of the qualitatively filtered pool alone on label-scarce
# segmentation (Tables 4-6 analogues), the ranking per resolution, the generic / specific compositions and Table 3.
# Appends its final outputs to TARGETS (and table outputs to FIGURE_TARGETS). Helpers come from scarce.smk.
#
#   results/compare/<model>/filter.csv                 the qualitative filter (§5.1) on the model's candidate pool
#   results/compare/<model>/screen-<scene>.csv         every kept activation alone (scene: simple | complex)
#   results/compare/<model>/rank.csv                   ranking per resolution, the paper's Tables 4-6 values beside
#   results/compare/<model>/composition.csv            generic + specific sets within the channel budget
#   results/compare/<model>/table3/<set>-<scene>.csv   Table 3 runs (set: generic | specific; + .json summaries)
#   paper_figures/table4_6_<model>.{csv,tex,md}, paper_figures/table3.{csv,tex,md}

SCARCE_SCREEN = SCARCE.get("screen") or {}
SCARCE_CMP = SCARCE.get("compare") or {}
SCARCE_T3 = SCARCE.get("table3") or {}
SCARCE_SETTINGS = ("generic", "specific")


def cmp_family(model):
    return wf.model_entry(config, model)["family"]


def cmp_paper_model(model):
    """Whose Tables 4-6 columns sit beside ours: config compare.paper_model, else the model's family."""
    family = cmp_family(model)
    default = family if family in _compare.PAPER_COLUMNS else "none"
    return (SCARCE_CMP.get("paper_model") or {}).get(model, default)


def cmp_budget(model):
    """Channel budget of the composed sets: by model name, then family, then the paper's (Ours totals). An integer,
    or the name of a layer set whose channel total (read from its store on the simple dataset) is the budget."""
    budget = SCARCE_CMP.get("budget") or {}
    family = cmp_family(model)
    value = budget.get(model, budget.get(family, _compare.PRACTICAL_CHANNELS.get(family)))
    if value is None:
        raise ValueError(f"scarce.compare.budget: no channel budget for model {model!r} (family {family})")
    return value


def cmp_budget_store(model):
    """The store whose channel total is the budget, when the budget names a layer set."""
    value = cmp_budget(model)
    return [] if isinstance(value, int) else [wf.store_done(config, scarce_dataset("simple"), model, value)]


def cmp_budget_arg(model, stores):
    if not stores:
        return str(cmp_budget(model))
    return scarce_py('import json, sys; print(sum(s[0] for s in json.load(open(sys.argv[1]))["layers"].values()))',
                     stores[0])


def cmp_resolutions_arg(model):
    res = (SCARCE_CMP.get("resolutions") or {}).get(cmp_family(model))
    return f"--resolutions {','.join(res)}" if res else ""


def cmp_screen_store(model, scene):
    return wf.store_done(config, scarce_dataset(scene), model, SCARCE_SCREEN.get("store_set", "pool"))


def cmp_t3_models():
    return [m for m in SCARCE_T3.get("models", []) if m in scarce_models()]


CMP_MODEL = scarce_alt(scarce_models())
if SCARCE and SCARCE_SCREEN:
    for _m in scarce_models():
        TARGETS.append(f"{COMPARE_DIR}/{_m}/rank.csv")
        FIGURE_TARGETS.extend(f"{SCARCE_FIGURES}/table4_6_{_m}.{ext}" for ext in ("csv", "tex", "md"))
    if SCARCE_T3 and cmp_t3_models():
        TARGETS.extend(f"{COMPARE_DIR}/{m}/table3/{s}-{c}.csv" for m in cmp_t3_models()
                       for s in SCARCE_SETTINGS for c in SCARCE_SCENES)
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
        protocol=scarce_protocol_args(SCARCE_SCREEN.get("splits", 5)) if SCARCE else "",
    log:
        f"{LOGS}/compare/{{model}}/screen-{{scene}}.log",
    threads: scarce_protocol()["threads"]
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
    output:
        rank=f"{COMPARE_DIR}/{{model}}/rank.csv",
        composition=f"{COMPARE_DIR}/{{model}}/composition.csv",
    wildcard_constraints:
        model=CMP_MODEL,
    params:
        paper=lambda w: cmp_paper_model(w.model),
        budget=lambda w, input: cmp_budget_arg(w.model, input.budget),
        resolutions=lambda w: cmp_resolutions_arg(w.model),
    log:
        f"{LOGS}/compare/{{model}}/compare.log",
    conda: ENV
    shell:
        "diffact --log {log} scarce-compare --simple {input.simple} --complex {input.complex} "
        "--paper-model {params.paper} --budget {params.budget} {params.resolutions} "
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
        setting="generic|specific",
        scene="simple|complex",
    params:
        store=lambda w, input: os.path.dirname(input.store),
        layers=lambda w, input: csv_layers_arg(input.composition, "activation", "set", w.setting),
        dataset=lambda w: scarce_dataset_args(w.scene),
        protocol=scarce_protocol_args(SCARCE_T3.get("splits", 5)) if SCARCE else "",
    log:
        f"{LOGS}/compare/{{model}}/table3-{{setting}}-{{scene}}.log",
    threads: scarce_protocol()["threads"]
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
        theme="src/diffact/viz/theme.py",
    output:
        csv=f"{SCARCE_FIGURES}/table4_6_{{model}}.csv",
        tex=f"{SCARCE_FIGURES}/table4_6_{{model}}.tex",
        md=f"{SCARCE_FIGURES}/table4_6_{{model}}.md",
    wildcard_constraints:
        model=CMP_MODEL,
    params:
        paper=lambda w: cmp_paper_model(w.model),
    log:
        f"{LOGS}/figures/table4_6_{{model}}.log",
    conda: ENV
    shell:
        "diffact --log {log} notebook {input.nb} --executed {RESULTS}/notebooks/table4_6_{wildcards.model}.ipynb "
        "-p rank={input.rank} -p composition={input.composition} -p filter_report={input.filter} "
        "-p model={wildcards.model} -p paper_model={params.paper} -p out_stem={SCARCE_FIGURES}/table4_6_{wildcards.model}"


rule table3_notebook:
    message: "Table 3: generic vs specific composition on simple and complex scenes, the paper's beside"
    input:
        runs=[f"{COMPARE_DIR}/{m}/table3/{s}-{c}.json" for m in cmp_t3_models() for s in SCARCE_SETTINGS
              for c in SCARCE_SCENES],
        compositions=[f"{COMPARE_DIR}/{m}/composition.csv" for m in cmp_t3_models()],
        nb="notebooks/table3.py",
        theme="src/diffact/viz/theme.py",
    output:
        csv=f"{SCARCE_FIGURES}/table3.csv",
        tex=f"{SCARCE_FIGURES}/table3.tex",
        md=f"{SCARCE_FIGURES}/table3.md",
    params:
        models="[" + ",".join(cmp_t3_models()) + "]",
        families="{" + ",".join(f"{m}: {cmp_family(m)}" for m in cmp_t3_models()) + "}",
    log:
        f"{LOGS}/figures/table3.log",
    conda: ENV
    shell:
        "diffact --log {log} notebook {input.nb} --executed {RESULTS}/notebooks/table3.ipynb "
        "-p 'models={params.models}' -p 'families={params.families}' -p compare_dir={COMPARE_DIR} -p out_stem={SCARCE_FIGURES}/table3"
