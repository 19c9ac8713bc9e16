"""Action classifiers: 3D backbones, ROI features, the linear and actor-target relation heads."""
