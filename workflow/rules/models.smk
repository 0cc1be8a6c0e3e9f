# Models the workflow trains: the demo's tiny SD1.5- / SDXL-shaped latent diffusion pipelines, built from config and
# trained on CPU, and the Fig 15 control (a conventional residual U-Net). Real models (paper profile) have no `build`
# entry and are loaded from their hub id.


rule build_demo_model:
    message: "build and train the demo model {wildcards.model}"
    output:
        index=f"{RESULTS}/models/{{model}}/model_index.json",
        loss_csv=f"{RESULTS}/models/{{model}}.loss.csv",
        loss_png=f"{RESULTS}/models/{{model}}.loss.png",
    params:
        arch=lambda w: wf.model_entry(config, w.model)["build"],
        folder=lambda w: wf.model_entry(config, w.model)["source"],
        untrained=lambda w: "--untrained" if wf.model_entry(config, w.model).get("random_init") else "",
        opts=lambda w: " ".join(f"--{k.replace('_', '-')} {v}" for k, v in config["demo_models"].items()),
    log:
        f"{LOGS}/models/{{model}}.log",
    threads: stage_threads("train_unet", fallback=wf.demo_model_threads(config))
    resources: **stage_resources("train_unet")
    conda: ENV
    shell:
        "diffact --log {log} build-demo-model --arch {params.arch} --out {params.folder} {params.opts} "
        "{params.untrained} --loss-csv {output.loss_csv} --loss-png {output.loss_png}"


rule train_control_unet:
    message: "train the Fig 15 control (conventional residual U-Net) on {params.scene}"
    input:
        data=lambda w: wf.dataset_input(config, wf.properties.control_scene(config)),
    output:
        model=f"{wf.properties.control_model_dir(config)}/model.safetensors",
        loss=f"{wf.properties.control_model_dir(config)}.loss.csv",
    params:
        scene=wf.properties.control_scene(config),
        root=lambda w: wf.dataset_entry(config, wf.properties.control_scene(config))["root"],
        size=config["extraction"]["image_size"],
        steps=wf.properties.control_steps_arg(config),
        seed=config["seed"],
        folder=lambda w, output: os.path.dirname(output.model),
    log:
        f"{LOGS}/models/{wf.properties.CONTROL}.log",
    threads: stage_threads("train_unet")
    resources: **stage_resources("train_unet")
    conda: ENV
    shell:
        "diffact --log {log} train-control-unet --dataset-root {params.root} --out {params.folder} "
        "--image-size {params.size} {params.steps} --seed {params.seed} --loss-csv {output.loss}"
