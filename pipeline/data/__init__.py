"""Model inputs: clips around keyframes from the frame and flow stores, and training datasets."""
