# Demo datasets, made from images shipped inside installed packages, in the real datasets' layouts: SPair-71k
# (correspondence), DDPM-seg (label-scarce segmentation, datasets.<name>.build: simple|complex) and ADE20K
# (segmentation, build: ade). Real datasets (paper profile) have no `build` entry.


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


for ddpmseg_name, ddpmseg_entry in wf.profile.demo_datasets(config, "ddpmseg").items():

    rule:
        name: f"demo_seg_data_{ddpmseg_name.replace('-', '_')}"
        message: f"make the demo {ddpmseg_entry['build']} segmentation dataset {ddpmseg_name} (DDPM-seg layout)"
        output:
            wf.profile.demo_marker(ddpmseg_entry),
        params:
            kind=ddpmseg_entry["build"],
            root=lambda w, output: os.path.dirname(output[0]),
            seed=ddpmseg_entry.get("seed", config["seed"]),
            size=config["extraction"]["image_size"],
            counts=wf.scarce.demo_data_args(config),
        log:
            f"{LOGS}/data/{ddpmseg_name}.log",
        threads: stage_threads("default")
        resources: **stage_resources("default")
        conda: ENV
        shell:
            "diffact --log {log} make-demo-seg --kind {params.kind} --out {params.root} --seed {params.seed} "
            "--size {params.size} {params.counts}"


for ade_name, ade_entry in wf.profile.demo_datasets(config, "ade20k").items():

    rule:
        name: f"demo_ade_data_{ade_name.replace('-', '_')}"
        message: f"make the demo segmentation dataset {ade_name} (ADE20K layout)"
        output:
            wf.profile.demo_marker(ade_entry),
        params:
            root=lambda w, output: os.path.dirname(output[0]),
            seed=ade_entry.get("seed", config["seed"]),
            sizes=wf.segmentation.demo_data_args(config),
        log:
            f"{LOGS}/data/{ade_name}.log",
        threads: stage_threads("default")
        resources: **stage_resources("default")
        conda: ENV
        shell:
            "diffact --log {log} make-demo-ade --out {params.root} --seed {params.seed} {params.sizes}"
