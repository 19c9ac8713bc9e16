rule finetune:
    """Train a backbone and its ROI head end to end on the train split's person boxes."""
    input:
        unpack(finetune_inputs),
    output:
        weights=BACKBONE_WEIGHTS,
        train_log=FINETUNE_LOG,
        provenance=provenance_of(BACKBONE_WEIGHTS),
        log_provenance=provenance_of(FINETUNE_LOG),
    log:
        f"{LOGS}/finetune/{{backbone}}.log",
    benchmark:
        BENCH_FINETUNE
    conda:
        "../../envs/models.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=720,
        gpu=gpus("finetune"),
    params:
        json=lambda wildcards: BACKBONE_JSON[wildcards.backbone],
        torchrun=torchrun("finetune"),
        threads=lambda wildcards, threads: process_threads("finetune", threads),
    shell:
        "python {params.torchrun} -m pipeline.stages.finetune --label-map {input.label_map}"
        " --ground-truth {input.ground_truth} --boxes {input.boxes} --stores {input.stores} --out {output.weights} --log-csv {output.train_log}"
        " --params {params.json:q} --threads {params.threads} > {log} 2>&1"
