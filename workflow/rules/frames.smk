rule frames:
    """Decode one video with ffmpeg, resized, at the models' frame rate, into JPEGs in HDF5."""
    input:
        unpack(frames_inputs),
    output:
        FRAMES,
    log:
        f"{LOGS}/frames/{{video}}.log",
    benchmark:
        BENCH_FRAMES
    conda:
        "../../envs/media.yaml"
    threads: 2
    resources:
        mem_mb=1000,
        runtime=30,
    params:
        json=lambda wildcards: media_params_json("frames", wildcards.video),
        keyframes=lambda wildcards, input: flag("keyframes", input, "keyframes"),
    shell:
        "python -m pipeline.stages.frames --video {input.video:q} --video-id={wildcards.video:q} {params.keyframes}"
        " --out {output} --params {params.json:q} --threads {threads} > {log} 2>&1"
