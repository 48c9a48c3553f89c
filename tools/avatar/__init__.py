"""The procedural default character: drawing, mouth model, template loop and dataset writer.

Everything is numpy only (no torch, no image library): shapes are signed-distance fields with
analytic one-pixel coverage, so the same code draws a whole frame or just the mouth box, and a
pixel gets bit-identical values either way (see canvas.py).
"""
