# Semantic correspondence: per-activation nearest-neighbour PCK (paper §2.8 protocol) and the demo table.

CORR = config.get("correspondence", {})
if CORR:
    TARGETS.append(f"{RESULTS}/correspondence/nn_pck_table.csv")


def corr_models():
    models = list(CORR.get("models", []))
    if CORR.get("random_reference", False):
        models += [f"{m}{wf.RANDOM_SUFFIX}" for m in CORR.get("models", []) if config["models"][m].get("build")]
    return models


rule pck_screen:
    message: "NN PCK of every {params.layerset} activation of {wildcards.model}"
    input:
        store=lambda w: wf.store_done(config, CORR["dataset"], w.model, CORR["layer_set"]),
    output:
        f"{RESULTS}/correspondence/{{model}}/nn_pck.csv",
    params:
        layerset=CORR.get("layer_set"),
        root=lambda w: wf.dataset_entry(config, CORR["dataset"])["root"],
        split=lambda w: wf.dataset_entry(config, CORR["dataset"]).get("split", "test"),
        eval_size=CORR.get("eval_size", 512),
        store=lambda w, input: os.path.dirname(input.store),
    log:
        f"{LOGS}/correspondence/{{model}}.log",
    conda: ENV
    shell:
        "diffact --log {log} pck-screen --store {params.store} --dataset-root {params.root} --split {params.split} "
        "--eval-size {params.eval_size} --model-name {wildcards.model} --out {output}"


rule pck_pixels:
    message: "NN PCK of the raw-pixel patch reference"
    input:
        data=lambda w: wf.dataset_input(config, CORR["dataset"]),
    output:
        f"{RESULTS}/correspondence/pixels/nn_pck.csv",
    params:
        root=lambda w: wf.dataset_entry(config, CORR["dataset"])["root"],
        split=lambda w: wf.dataset_entry(config, CORR["dataset"]).get("split", "test"),
        size=config["extraction"]["image_size"],
        eval_size=CORR.get("eval_size", 512),
        patch=CORR.get("pixel_patch", 5),
    log:
        f"{LOGS}/correspondence/pixels.log",
    conda: ENV
    shell:
        "diffact --log {log} pck-pixels --dataset-root {params.root} --split {params.split} --image-size {params.size} "
        "--eval-size {params.eval_size} --patch {params.patch} --out {output}"


rule pck_table:
    message: "merge the NN PCK tables"
    input:
        models=expand(f"{RESULTS}/correspondence/{{model}}/nn_pck.csv", model=corr_models()),
        pixels=f"{RESULTS}/correspondence/pixels/nn_pck.csv" if CORR.get("pixel_patch") else [],
    output:
        f"{RESULTS}/correspondence/nn_pck_table.csv",
    params:
        labels=lambda w, input: " ".join(
            f"{'random-weights' if m.endswith(wf.RANDOM_SUFFIX) else 'trained'}={p}"
            for m, p in zip(corr_models(), input.models)
        )
        + (f" pixels={input.pixels}" if CORR.get("pixel_patch") else ""),
    log:
        f"{LOGS}/correspondence/table.log",
    conda: ENV
    shell:
        "diffact --log {log} pck-table {params.labels} --out {output}"
