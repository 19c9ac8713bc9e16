rule flow:
    """Optical flow (TV-L1 or Farneback) between consecutive stored frames, quantized to uint8 JPEGs."""
    input:
        unpack(flow_inputs),
    output:
        FLOW,
    log:
        f"{LOGS}/flow/{{method}}/{{video}}.log",
    benchmark:
        BENCH_FLOW
    conda:
        "../../envs/media.yaml"
    threads: 2
    resources:
        mem_mb=2000,
        runtime=240,
    params:
        json=lambda wildcards: FLOW_JSON[wildcards.method],
        keyframes=lambda wildcards, input: flag("keyframes", input, "keyframes"),
    shell:
        "python -m pipeline.stages.flow --frames {input.frames} {params.keyframes} --out {output}"
        " --params {params.json:q} --threads {threads} > {log} 2>&1"
