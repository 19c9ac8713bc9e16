"""Training stages: end-to-end finetuning of a backbone and training of heads on cached features."""
