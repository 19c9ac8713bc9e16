rule fuse:
    """Late fusion of several models' predictions on the same boxes (DESIGN.md: fuse(strategy))."""
    input:
        logits=lambda wildcards: expand(LOGITS, model=FUSIONS[wildcards.fusion]["models"], split=wildcards.split),
        label_map=LABEL_MAP,
    output:
        csv=R + "/predictions/fusion-{fusion}/{split}.csv",
        logits=R + "/predictions/fusion-{fusion}/{split}.logits.parquet",
    params:
        json=lambda wildcards: params_json(FUSIONS[wildcards.fusion]),
    log:
        f"{LOGS}/fuse/{{fusion}}/{{split}}.log",
    conda:
        "../../envs/models.yaml"
    shell:
        "python -m pipeline.fusion --logits {input.logits} --label-map {input.label_map} --out {output.csv}"
        " --out-logits {output.logits} --params {params.json:q} > {log} 2>&1"
