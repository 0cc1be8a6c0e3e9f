# Demo datasets, made from images shipped inside installed packages, in the real datasets' layouts.


rule demo_spair:
    message: "make the demo correspondence dataset (SPair-71k layout)"
    output:
        f"{RESULTS}/data/spair-demo/Layout/large/test.txt",
    params:
        root=lambda w, output: os.path.dirname(os.path.dirname(os.path.dirname(output[0]))),  # <root>/Layout/large/
        seed=config["seed"],
        size=config["extraction"]["image_size"],
        pairs=10,  # several pairs per source image so the trained aggregation has a training split
    log:
        f"{LOGS}/data/spair-demo.log",
    threads: stage_threads("default")
    resources: **stage_resources("default")
    conda: ENV
    shell:
        "diffact --log {log} make-demo-spair --out {params.root} --seed {params.seed} --image-size {params.size} "
        "--pairs-per-image {params.pairs}"
