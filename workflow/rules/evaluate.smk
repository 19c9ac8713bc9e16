rule evaluate:
    """AVA frame-mAP at IoU 0.5 of one model's (or fusion's, or the baseline's) predictions on one split."""
    input:
        unpack(evaluate_inputs),
    output:
        EVALUATION,
    log:
        f"{LOGS}/evaluate/{{model}}/{{split}}.log",
    conda:
        "../../envs/models.yaml"
    params:
        json=PARAMS_JSON["evaluate"],
        excluded=lambda wildcards, input: (
            f"--excluded {input.excluded}" if config["evaluate"]["variant"] == "2019" else ""
        ),
    shell:
        "python -m pipeline.stages.evaluate --label-map {input.label_map} --ground-truth {input.ground_truth}"
        " --detections {input.predictions} {params.excluded} --problems {input.problems} --split {wildcards.split}"
        " --out {output} --params {params.json:q} > {log} 2>&1"
