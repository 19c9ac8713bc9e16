rule predict:
    """Action probabilities at every detected box of a split: AVA detection CSV and logits for fusion."""
    input:
        unpack(predict_inputs),
    output:
        csv=PREDICTIONS,
        logits=LOGITS,
        provenance=provenance_of(PREDICTIONS),
    log:
        f"{LOGS}/predict/{{model}}/{{split}}.log",
    wildcard_constraints:
        model=one_of(MODELS),
    conda:
        "../../envs/models.yaml"
    threads: 1
    resources:
        gpu=gpus("predict"),
    params:
        json=lambda wildcards: MODEL_JSON[wildcards.model],
        features=lambda wildcards: features_args(wildcards.model, wildcards.split),
    shell:
        "python -m pipeline.stages.predict --head {input.head} {params.features} --label-map {input.label_map}"
        " --out {output.csv} --logits {output.logits} --params {params.json:q} --threads {threads} > {log} 2>&1"
