"""Audio sources (files, stream, mic), resampling and playback."""
