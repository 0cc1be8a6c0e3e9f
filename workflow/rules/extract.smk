# Feature extraction into provenance-keyed stores: results/features/<dataset>/<model>/<layer set>-<key>/.
# The key hashes dataset, model, extraction settings and the layer-set file, so changing any of them
# makes a new store instead of mixing features.


rule extract:
    message: "extract {wildcards.layerset} of {wildcards.model} on {wildcards.dataset}"
    input:
        model=lambda w: wf.model_input(config, w.model),
        data=lambda w: wf.dataset_input(config, w.dataset),
    output:
        f"{RESULTS}/features/{{dataset}}/{{model}}/{{layerset}}-{{key}}/complete.json",
    wildcard_constraints:
        key="[0-9a-f]{12}",
        layerset="[A-Za-z0-9_-]+?",
    params:
        args=lambda w: wf.extract_args(config, w.dataset, w.model, w.layerset),
        out=lambda w, output: os.path.dirname(output[0]),
    log:
        f"{LOGS}/extract/{{dataset}}/{{model}}/{{layerset}}-{{key}}.log",
    threads: workflow.cores
    conda: ENV
    shell:
        "diffact --log {log} extract {params.args} --out {params.out} --check-key"
