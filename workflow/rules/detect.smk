rule detector_train:
    """Fine-tune the FPN person detector on the train split's ground-truth person boxes."""
    input:
        unpack(detector_train_inputs),
    output:
        detector=DETECTOR,
        train_log=DETECTOR_LOG,
        provenance=provenance_of(DETECTOR),
    log:
        f"{LOGS}/detector_train.log",
    benchmark:
        BENCH_DETECTOR_TRAIN
    conda:
        "../../envs/models.yaml"
    threads: 2
    resources:
        mem_mb=6000,
        runtime=600,
        gpu=gpus("detector_train"),
    params:
        json=PARAMS_JSON["detect"],
        torchrun=torchrun("detector_train"),
        threads=lambda wildcards, threads: process_threads("detector_train", threads),
    shell:
        "python {params.torchrun} -m pipeline.stages.detector_train --frames {input.frames}"
        " --ground-truth {input.ground_truth} --out {output.detector} --log-csv {output.train_log}"
        " --params {params.json:q} --threads {params.threads} > {log} 2>&1"


rule detect:
    """Person boxes at every keyframe of a split, with recall and precision at IoU 0.5."""
    input:
        unpack(detect_inputs),
    output:
        boxes=BOXES,
        metrics=DETECT_METRICS,
        provenance=provenance_of(BOXES),
    log:
        f"{LOGS}/detect/{{split}}.log",
    benchmark:
        BENCH_DETECT
    wildcard_constraints:
        split=one_of(detected_splits()),
    conda:
        "../../envs/models.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=240,
        gpu=gpus("detect"),
    params:
        json=PARAMS_JSON["detect"],
        ground_truth=lambda wildcards, input: flag("ground-truth", input, "ground_truth"),
    shell:
        "python -m pipeline.stages.detect --checkpoint {input.checkpoint} --frames {input.frames}"
        " --keyframes {input.keyframes} --out {output.boxes} --metrics {output.metrics} {params.ground_truth}"
        " --params {params.json:q} --threads {threads} > {log} 2>&1"


rule detect_precomputed:
    """Precomputed person boxes (SlowFast's or LFB's files, detect.precomputed) in place of the detector."""
    input:
        unpack(precomputed_inputs),
    output:
        boxes=BOXES,
        metrics=DETECT_METRICS,
        provenance=provenance_of(BOXES),
    log:
        f"{LOGS}/detect/{{split}}.precomputed.log",
    wildcard_constraints:
        split=one_of(PRECOMPUTED),
    conda:
        "../../envs/models.yaml"
    params:
        json=PARAMS_JSON["detect"],
        ground_truth=lambda wildcards, input: flag("ground-truth", input, "ground_truth"),
    shell:
        "python -m pipeline.stages.detect_precomputed --boxes {input.boxes:q} --keyframes {input.keyframes}"
        " --out {output.boxes} --metrics {output.metrics} {params.ground_truth} --params {params.json:q}"
        " > {log} 2>&1"


rule detect_pretrained:
    """Person boxes of an inference split from a pretrained COCO detector (infer.detector), no ground truth."""
    input:
        unpack(pretrained_inputs),
    output:
        boxes=BOXES,
        metrics=DETECT_METRICS,
        provenance=provenance_of(BOXES),
    log:
        f"{LOGS}/detect/{{split}}.pretrained.log",
    benchmark:
        f"{BENCH}/detect/{{split}}.pretrained.tsv"
    wildcard_constraints:
        split=one_of(pretrained_splits()),
    conda:
        "../../envs/models.yaml"
    threads: 2
    resources:
        mem_mb=3000,
        runtime=60,
        gpu=gpus("detect"),
    params:
        json=PARAMS_JSON["detect_pretrained"],
    shell:
        "python -m pipeline.stages.detect_pretrained --frames {input.frames} --keyframes {input.keyframes}"
        " --out {output.boxes} --metrics {output.metrics} --params {params.json:q} --threads {threads} > {log} 2>&1"
