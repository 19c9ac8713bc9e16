rule prepare:
    """Cut a full AVA movie to its annotated segment and check that no frame was lost (dataset.prepare)."""
    input:
        movie_file,
    output:
        video=PREPARED,
        report=R + "/prepared/{video}.json",
    params:
        start=lambda wildcards: PREPARE_CFG["start"],
        duration=lambda wildcards: PREPARE_CFG["duration"],
    threads: 2
    resources:
        mem_mb=1500,
        runtime=60,
    log:
        f"{LOGS}/prepare/{{video}}.log",
    benchmark:
        f"{BENCH}/prepare/{{video}}.tsv"
    conda:
        "../../envs/media.yaml"
    shell:
        "python -m pipeline.ava.prepare --video {input:q} --out-dir $(dirname {output.video}) --report {output.report}"
        " --start {params.start} --duration {params.duration} --threads {threads} > {log} 2>&1"


rule frames:
    """Decode one video with ffmpeg, resized, at the models' frame rate, into JPEGs in HDF5."""
    input:
        unpack(frames_inputs),
    output:
        FRAMES,
    params:
        json=params_json(config["frames"]),
        time_offset=DATASET_CFG["time_offset"],
        windows=lambda wildcards, input: clip_windows_arg(input),
    threads: 2
    resources:
        mem_mb=1000,
        runtime=30,
    log:
        f"{LOGS}/frames/{{video}}.log",
    benchmark:
        f"{BENCH}/frames/{{video}}.tsv"
    conda:
        "../../envs/media.yaml"
    shell:
        "python -m pipeline.media.frames --video {input.video:q} --video-id={wildcards.video:q}"
        " --time-offset {params.time_offset} {params.windows}"
        " --out {output} --params {params.json:q} --threads {threads} > {log} 2>&1"


rule flow:
    """Optical flow (TV-L1 or Farneback) between consecutive stored frames, quantized to uint8 JPEGs."""
    input:
        unpack(flow_inputs),
    output:
        FLOW,
    params:
        json=flow_params,
        windows=lambda wildcards, input: clip_windows_arg(input, f"flow/{wildcards.method}"),
    threads: 2
    resources:
        mem_mb=2000,
        runtime=240,
    log:
        f"{LOGS}/flow/{{method}}/{{video}}.log",
    benchmark:
        f"{BENCH}/flow/{{method}}/{{video}}.tsv"
    conda:
        "../../envs/media.yaml"
    shell:
        "python -m pipeline.media.flow --frames {input.frames} --method {wildcards.method} --out {output} {params.windows}"
        " --params {params.json:q} --threads {threads} > {log} 2>&1"


rule audio:
    """Mono 16 kHz audio through ffmpeg, one log-mel window per second of the AVA timeline."""
    input:
        video=video_file,
    output:
        AUDIO,
    params:
        json=params_json(config["audio"]),
        time_offset=DATASET_CFG["time_offset"],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    log:
        f"{LOGS}/audio/{{video}}.log",
    benchmark:
        f"{BENCH}/audio/{{video}}.tsv"
    conda:
        "../../envs/media.yaml"
    shell:
        "python -m pipeline.media.audio --video {input.video:q} --video-id={wildcards.video:q}"
        " --time-offset {params.time_offset} --out {output} --params {params.json:q} > {log} 2>&1"
