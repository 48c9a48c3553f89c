"""EdgeMate appliance runtime: audio in, talking-avatar frames out, torch-free (ncnn only)."""
import os as _os

# pygame prints a banner to stdout on import; wherever it is imported from (display, template
# decoding, devices), it must not land in `--json` output or a service's journal.
_os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

__version__ = "0.1.0"

#: Video frame rate; frame k shows audio time k / FPS seconds.
FPS = 25
#: Internal audio rate: every source is resampled to 16 kHz mono float32.
SAMPLE_RATE = 16000
#: 16 kHz samples per video frame.
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS
