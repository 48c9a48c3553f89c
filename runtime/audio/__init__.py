"""Audio in and out: every source (WAV playlist, microphone, pushed speech on a unix
socket) yields 16 kHz-or-native `AudioChunk`s; resampling to 16 kHz mono, the audio timeline
the record sink reads, and playback to a speaker. Nothing here knows about mouths or frames.
"""

#: Values of audio.source.
SOURCE_KINDS = ("files", "stream", "mic")
