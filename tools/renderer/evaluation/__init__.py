"""Evaluation of an avatar bundle's renderer against the procedural generator's ground truth.

The command is `python -m tools.renderer.evaluate` (tools/renderer/evaluate.py); this package holds
its parts: metrics (PSNR, SSIM), truth (the bundle's `source` block -> the generator),
held-out parameter sets, the evaluation through the runtime's renderer and compositor,
the contact sheet and plots, per-stage cost, and the EVAL.md / EVAL.json report.
"""
