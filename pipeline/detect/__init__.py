"""The FPN person detector: region proposals for the action models (model, training, inference,
precomputed boxes, metrics, training boxes)."""
