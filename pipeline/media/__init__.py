"""Video, optical flow and audio: decoding with ffmpeg and the per-video HDF5 stores."""
