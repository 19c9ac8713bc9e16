rule audio:
    """Mono 16 kHz audio through ffmpeg, one log-mel window per second of the AVA timeline."""
    input:
        video=video_file,
    output:
        AUDIO,
    log:
        f"{LOGS}/audio/{{video}}.log",
    benchmark:
        BENCH_AUDIO
    conda:
        "../../envs/media.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        json=lambda wildcards: media_params_json("audio", wildcards.video),
    shell:
        "python -m pipeline.stages.audio --video {input.video:q} --video-id={wildcards.video:q} --out {output}"
        " --params {params.json:q} > {log} 2>&1"
