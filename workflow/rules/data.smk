# Demo datasets, made from images shipped inside installed packages, in the real datasets' layouts.


rule demo_spair:
    message: "make the demo correspondence dataset (SPair-71k layout)"
    output:
        f"{RESULTS}/data/spair-demo/Layout/large/test.txt",
    params:
        root=f"{RESULTS}/data/spair-demo",
        seed=config["seed"],
        size=config["extraction"]["image_size"],
    log:
        f"{LOGS}/data/spair-demo.log",
    conda: ENV
    shell:
        "diffact --log {log} make-demo-spair --out {params.root} --seed {params.seed} --image-size {params.size}"
