"""Media: probing, stitching, frames, quality checks, subtitles and reports, all through ffmpeg."""
