"""Rendering: template frames, neural mouth stages and the compositor."""
