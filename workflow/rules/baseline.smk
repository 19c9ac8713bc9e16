rule baseline:
    """What learning nothing gives: each class scored by its frequency in train, on the same detected boxes."""
    input:
        ground_truth=GROUND_TRUTH.format(split=TRAIN_SPLIT),
        boxes=BOXES,
        label_map=LABEL_MAP,
    output:
        csv=BASELINE_PREDICTIONS,
        provenance=provenance_of(BASELINE_PREDICTIONS),
    log:
        f"{LOGS}/predict/{BASELINE}/{{split}}.log",
    conda:
        "../../envs/models.yaml"
    shell:
        "python -m pipeline.stages.baseline --train-ground-truth {input.ground_truth} --boxes {input.boxes}"
        " --label-map {input.label_map} --out {output.csv} > {log} 2>&1"
