"""AVA: file formats (label maps, CSVs, exclusions), box geometry and the official frame-mAP."""
