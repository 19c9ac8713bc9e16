rule ablation:
    """Heads and fusions retrained on cached features over several seeds: mean and spread (docs/DESIGN.md)."""
    input:
        unpack(ablation_inputs),
    output:
        summary=ABLATION,
        markdown=ABLATION_MD,
    log:
        f"{LOGS}/ablation.log",
    benchmark:
        f"{BENCH}/ablation.tsv"
    conda:
        "../../envs/models.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        json=PARAMS_JSON.get("ablation", ""),
        features=lambda wildcards: ablation_args(),
        excluded=lambda wildcards, input: (
            f"--excluded {input.excluded}" if config["evaluate"]["variant"] == "2019" else ""
        ),
    shell:
        "python -m pipeline.stages.ablation {params.features} --label-map {input.label_map}"
        " --ground-truth {input.ground_truth} {params.excluded} --out {output.summary}"
        " --markdown {output.markdown} --params {params.json:q} --threads {threads} > {log} 2>&1"
