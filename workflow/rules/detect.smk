rule detector_train:
    """Fine-tune the FPN person detector on the train split's ground-truth person boxes."""
    input:
        frames=frames_of_split(TRAIN_SPLIT),
        ground_truth=GROUND_TRUTH.format(split=TRAIN_SPLIT),
    output:
        DETECTOR,
    params:
        json=params_json(config["detect"], seed=config["seed"]),
        frames_dir=f"{R}/frames",
    threads: 2
    resources:
        mem_mb=6000,
        runtime=600,
    log:
        f"{LOGS}/detector_train.log",
    benchmark:
        f"{BENCH}/detector_train.tsv"
    conda:
        "../../envs/models.yaml"
    shell:
        "python -m pipeline.detect.train --frames-dir {params.frames_dir} --ground-truth {input.ground_truth}"
        " --out {output} --params {params.json:q} --threads {threads} > {log} 2>&1"


rule detect:
    """Person boxes at every keyframe of a split, with recall and precision at IoU 0.5."""
    wildcard_constraints:
        split=DETECTED_SPLITS,
    input:
        unpack(detect_inputs),
    output:
        boxes=BOXES,
        metrics=DETECT_METRICS,
    params:
        json=params_json(config["detect"], seed=config["seed"]),
        frames_dir=f"{R}/frames",
        gt=lambda wildcards, input: ground_truth_arg(input),
    threads: 2
    resources:
        mem_mb=4000,
        runtime=240,
    log:
        f"{LOGS}/detect/{{split}}.log",
    benchmark:
        f"{BENCH}/detect/{{split}}.tsv"
    conda:
        "../../envs/models.yaml"
    shell:
        "python -m pipeline.detect.infer --checkpoint {input.checkpoint} --frames-dir {params.frames_dir}"
        " --keyframes {input.keyframes} --out {output.boxes} --metrics {output.metrics} {params.gt}"
        " --params {params.json:q} --threads {threads} > {log} 2>&1"


rule detect_precomputed:
    """Precomputed person boxes (SlowFast's or LFB's files, detect.precomputed) in place of the detector."""
    wildcard_constraints:
        split=PRECOMPUTED_SPLITS,
    input:
        unpack(precomputed_inputs),
    output:
        boxes=BOXES,
        metrics=DETECT_METRICS,
    params:
        json=params_json(config["detect"]),
        gt=lambda wildcards, input: ground_truth_arg(input),
    log:
        f"{LOGS}/detect/{{split}}.precomputed.log",
    conda:
        "../../envs/models.yaml"
    shell:
        "python -m pipeline.detect.precomputed --boxes {input.boxes:q} --keyframes {input.keyframes}"
        " --out {output.boxes} --metrics {output.metrics} {params.gt} --params {params.json:q} > {log} 2>&1"
