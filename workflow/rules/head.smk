rule head:
    """Train a classification head (linear or actor-target relation) on a model's cached train features."""
    input:
        unpack(head_inputs),
    output:
        head=HEAD,
        train_log=HEAD_LOG,
        provenance=provenance_of(HEAD),
        log_provenance=provenance_of(HEAD_LOG),
    log:
        f"{LOGS}/head/{{model}}.log",
    wildcard_constraints:
        model=one_of(MODELS),
    conda:
        "../../envs/models.yaml"
    threads: 1
    resources:
        gpu=gpus("head"),
        mem_mb=4000,
        runtime=60,
    params:
        json=lambda wildcards: MODEL_JSON[wildcards.model],
        features=lambda wildcards: features_args(wildcards.model, TRAIN_SPLIT),
    shell:
        "python -m pipeline.stages.head {params.features} --label-map {input.label_map} --out {output.head}"
        " --log-csv {output.train_log} --params {params.json:q} --threads {threads} > {log} 2>&1"
