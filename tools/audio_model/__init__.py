"""The audio model, offline: synthesised speech with exact phoneme timing (espeak-ng, festival), the phoneme -> viseme targets, kiosk-like augmentation, training, pnnx export, and the evaluation against real recordings. `python -m tools.audio_model.train --rebuild` rebuilds models/audio/.
"""
