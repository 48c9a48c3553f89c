"""Speech -> mouth parameters: the ingest thread that reads the audio source, resamples and
appends to the timeline; streaming fbank features; the ncnn audio model; and `MouthTrack`,
the per-frame store of six mouth parameters the frame loop reads by frame index.
"""
