rule fuse:
    """Late fusion of several models' logits on the same boxes (docs/DESIGN.md: fuse)."""
    input:
        unpack(fuse_inputs),
    output:
        csv=FUSED,
        logits=FUSED_LOGITS,
        provenance=provenance_of(FUSED),
    log:
        f"{LOGS}/fuse/{{fusion}}/{{split}}.log",
    conda:
        "../../envs/models.yaml"
    params:
        json=lambda wildcards: FUSION_JSON[wildcards.fusion],
        selection=lambda wildcards, input: flag_list("select-evaluations", input, "selection"),
    shell:
        "python -m pipeline.stages.fuse --logits {input.logits} --label-map {input.label_map} --out {output.csv}"
        " --out-logits {output.logits} {params.selection} --params {params.json:q} > {log} 2>&1"
