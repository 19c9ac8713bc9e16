rule features:
    """ROI features (and the context map for the actor-target relation) at every box of one video."""
    input:
        unpack(features_inputs),
    output:
        FEATURES,
    log:
        f"{LOGS}/features/{{backbone}}/{{split}}/{{video}}.log",
    benchmark:
        BENCH_FEATURES
    conda:
        "../../envs/models.yaml"
    threads: 1
    resources:
        gpu=gpus("features"),
        mem_mb=4000,
        runtime=60,
    params:
        json=lambda wildcards: BACKBONE_JSON[wildcards.backbone],
        ground_truth=lambda wildcards, input: flag("ground-truth", input, "ground_truth"),
    shell:
        "python -m pipeline.stages.features --weights {input.weights} --store {input.store}"
        " --video-id={wildcards.video:q} --keyframes {input.keyframes} --boxes {input.boxes} {params.ground_truth}"
        " --label-map {input.label_map} --out {output} --params {params.json:q} --threads {threads} > {log} 2>&1"
