"""Data: the dataset's manifest and video lists, and model inputs: clips around keyframes from the stores."""
