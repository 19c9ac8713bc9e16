"""The FPN person detector, the region proposals of the action models (libraries only; the stages are
``pipeline.stages.detector_train``, ``detect`` and ``detect_precomputed``): the network (``model``), keyframe
images (``keyframes``), training (``training``), inference (``inference``), precomputed box files
(``precomputed``), metrics (``metrics``), the box CSV and metrics JSON (``outputs``), person boxes per keyframe
(``boxes``) and the action models' training boxes (``training_boxes``)."""
