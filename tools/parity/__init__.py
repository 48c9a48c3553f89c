"""Cross-architecture parity: the shipped models' outputs on one machine against another.

`python -m tools.parity dump` runs fixed inputs through the audio model and both renderer
stages with several sets of ncnn options and saves everything to one .npz; `compare` reads
an x86 reference and any number of other dumps (an emulated Pi 4, Pi 5, M1) and prints the
parity table. Runtime dependencies only (numpy, ncnn, the runtime): it runs inside an arm64
root that has no torch (tools/arm64_check.sh).
"""
