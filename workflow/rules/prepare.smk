rule prepare:
    """Cut a full AVA movie to its annotated segment and check that no frame was lost (dataset.prepare)."""
    input:
        movie_file,
    output:
        video=PREPARED,
        report=PREPARED_REPORT,
        provenance=provenance_of(PREPARED),
    log:
        f"{LOGS}/prepare/{{video}}.log",
    benchmark:
        BENCH_PREPARE
    conda:
        "../../envs/media.yaml"
    threads: 2
    resources:
        mem_mb=1500,
        runtime=60,
    params:
        json=PARAMS_JSON.get("prepare"),
    shell:
        "python -m pipeline.stages.prepare --video {input:q} --out {output.video} --report {output.report}"
        " --params {params.json:q} --threads {threads} > {log} 2>&1"
