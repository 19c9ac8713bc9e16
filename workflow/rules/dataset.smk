rule dataset:
    """Validate the annotations, probe every video, and write the manifest, ground truth and keyframe lists."""
    input:
        dataset_inputs,
    output:
        manifest=MANIFEST,
        label_map=LABEL_MAP,
        ground_truth=expand(GROUND_TRUTH, split=ground_truth_splits()),
        excluded=expand(EXCLUDED, split=SPLITS),
        keyframes=expand(KEYFRAMES, split=SPLITS),
    log:
        f"{LOGS}/dataset.log",
    conda:
        "../../envs/media.yaml"
    params:
        json=PARAMS_JSON["dataset"],
    shell:
        "python -m pipeline.stages.dataset --params {params.json:q} --out-dir $(dirname {output.manifest})"
        " > {log} 2>&1"
