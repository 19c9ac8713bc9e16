checkpoint dataset:
    """Validate the annotations, probe every video, and write the manifest (the usable videos: later jobs
    are planned from it), the problems (videos left out, and why), ground truth and keyframe lists."""
    input:
        dataset_inputs,
    output:
        manifest=MANIFEST,
        problems=PROBLEMS,
        label_map=LABEL_MAP,
        ground_truth=expand(GROUND_TRUTH, split=ground_truth_splits()),
        excluded=expand(EXCLUDED, split=SPLITS),
        keyframes=expand(KEYFRAMES, split=SPLITS),
    log:
        f"{LOGS}/dataset.log",
    conda:
        "../../envs/media.yaml"
    threads: 2
    params:
        json=PARAMS_JSON["dataset"],
    shell:
        "python -m pipeline.stages.dataset --params {params.json:q} --out-dir $(dirname {output.manifest})"
        " --threads {threads} > {log} 2>&1"


rule dataset_infer:
    """Probe a video without annotations (infer_videos) and list its keyframes: its inference split."""
    input:
        video=video_file,
    output:
        keyframes=INFER_KEYFRAMES,
        info=INFER_INFO,
    log:
        f"{LOGS}/dataset_infer/{{video}}.log",
    wildcard_constraints:
        video=one_of(INFER_VIDEOS),
    conda:
        "../../envs/media.yaml"
    params:
        json=PARAMS_JSON["dataset_infer"],
        split=lambda wildcards: INFER_SPLIT[wildcards.video],
    shell:
        "python -m pipeline.stages.dataset_infer --video {input.video:q} --video-id={wildcards.video:q}"
        " --split {params.split:q} --keyframes {output.keyframes} --info {output.info} --params {params.json:q}"
        " > {log} 2>&1"
