rule evaluate:
    """AVA frame-mAP at IoU 0.5 of one model's (or fusion's) predictions on one split."""
    input:
        unpack(evaluate_inputs),
    output:
        EVALUATION,
    params:
        capacity=config["evaluate"]["capacity"] or "none",
        variant=config["evaluate"]["variant"],
        iou=config["evaluate"]["iou"],
        excluded=lambda wildcards, input: f"-e {input.excluded}" if config["evaluate"]["variant"] == "2019" else "",
    log:
        f"{LOGS}/evaluate/{{model}}/{{split}}.log",
    conda:
        "../../envs/models.yaml"
    shell:
        "python -m pipeline.ava.evaluate -l {input.label_map} -g {input.ground_truth} -d {input.predictions}"
        " {params.excluded} --capacity {params.capacity} --variant {params.variant} --iou {params.iou}"
        " --json {output} > {log} 2>&1"
