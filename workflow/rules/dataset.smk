rule dataset:
    """Validate the annotations, probe every video, and write the manifest, ground truth and keyframe lists."""
    input:
        dataset_inputs,
    output:
        manifest=MANIFEST,
        label_map=LABEL_MAP,
        ground_truth=[GROUND_TRUTH.format(split=s) for s in SPLITS if has_ground_truth(s)],
        excluded=expand(EXCLUDED, split=SPLITS),
        keyframes=expand(KEYFRAMES, split=SPLITS),
    params:
        json=params_json(DATASET_CFG),
        out_dir=f"{R}/dataset",
    log:
        f"{LOGS}/dataset.log",
    conda:
        "../../envs/media.yaml"
    shell:
        "python -m pipeline.dataset --params {params.json:q} --out-dir {params.out_dir} > {log} 2>&1"
