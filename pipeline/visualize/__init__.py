"""Drawing what the pipeline found on a video: person tracks across keyframes, their top actions,
an annotated mp4 at the video's own frame rate and a contact sheet of keyframes."""
