rule finetune:
    """Train a backbone and its ROI head end to end on the train split's person boxes."""
    input:
        unpack(finetune_inputs),
    output:
        BACKBONE_WEIGHTS,
    params:
        json=lambda wildcards: params_json(BACKBONES[wildcards.backbone], seed=config["seed"],
                                           train_box_iou=config["detect"]["train_box_iou"]),
    threads: 2
    resources:
        mem_mb=8000,
        runtime=720,
    log:
        f"{LOGS}/finetune/{{backbone}}.log",
    benchmark:
        f"{BENCH}/finetune/{{backbone}}.tsv"
    conda:
        "../../envs/models.yaml"
    shell:
        "python -m pipeline.train.finetune --label-map {input.label_map} --ground-truth {input.ground_truth}"
        " --detections {input.detections} --stores {input.stores} --out {output}"
        " --log-csv $(dirname {output})/finetune_log.csv --params {params.json:q} --threads {threads} > {log} 2>&1"


rule features:
    """ROI features (and the context map for the actor-target relation) at every box of one video."""
    input:
        unpack(features_inputs),
    output:
        FEATURES,
    params:
        json=lambda wildcards: params_json(BACKBONES[wildcards.backbone], seed=config["seed"],
                                           train_box_iou=config["detect"]["train_box_iou"]),
        gt=lambda wildcards, input: ground_truth_arg(input),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    log:
        f"{LOGS}/features/{{backbone}}/{{split}}/{{video}}.log",
    benchmark:
        f"{BENCH}/features/{{backbone}}/{{split}}/{{video}}.tsv"
    conda:
        "../../envs/models.yaml"
    shell:
        "python -m pipeline.features --weights {input.weights} --store {input.store} --video-id={wildcards.video:q}"
        " --keyframes {input.keyframes} --detections {input.detections} {params.gt} --label-map {input.label_map}"
        " --out {output} --params {params.json:q} --threads {threads} > {log} 2>&1"


rule head:
    """Train a classification head (linear or actor-target relation) on a backbone's cached train features."""
    wildcard_constraints:
        model=MODEL_NAMES,
    input:
        unpack(head_inputs),
    output:
        head=HEAD,
        train_log=R + "/models/{model}/train_log.csv",
    params:
        json=lambda wildcards: params_json(MODELS[wildcards.model], seed=config["seed"]),
        features=lambda wildcards: model_features_args(wildcards.model, TRAIN_SPLIT),
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    log:
        f"{LOGS}/head/{{model}}.log",
    conda:
        "../../envs/models.yaml"
    shell:
        "python -m pipeline.train.head {params.features} --label-map {input.label_map}"
        " --out {output.head} --log-csv {output.train_log} --params {params.json:q} > {log} 2>&1"


rule predict:
    """Action probabilities at every detected box of a split: AVA detection CSV and logits for fusion."""
    wildcard_constraints:
        model=MODEL_NAMES,
    input:
        unpack(predict_inputs),
    output:
        csv=PREDICTIONS,
        logits=LOGITS,
    params:
        json=lambda wildcards: params_json(MODELS[wildcards.model]),
        features=lambda wildcards: model_features_args(wildcards.model, wildcards.split),
    log:
        f"{LOGS}/predict/{{model}}/{{split}}.log",
    conda:
        "../../envs/models.yaml"
    shell:
        "python -m pipeline.predict --head {input.head} {params.features} --label-map {input.label_map}"
        " --out {output.csv} --logits {output.logits} --params {params.json:q} > {log} 2>&1"


rule baseline_prior:
    """What learning nothing gives: each class scored by its frequency in train, on the same detected boxes."""
    input:
        ground_truth=GROUND_TRUTH.format(split=TRAIN_SPLIT),
        boxes=BOXES,
        label_map=LABEL_MAP,
    output:
        csv=R + f"/predictions/{BASELINE}/{{split}}.csv",
    log:
        f"{LOGS}/predict/{BASELINE}/{{split}}.log",
    conda:
        "../../envs/models.yaml"
    shell:
        "python -m pipeline.baseline --train-ground-truth {input.ground_truth} --boxes {input.boxes}"
        " --label-map {input.label_map} --out {output.csv} > {log} 2>&1"
