"""Mouth parameters -> pixels: the avatar bundle (template video, crop boxes, mask,
models), the decoded template cache, the coarse and fine ncnn stages, upscaling their change
into the mouth box, and the compositor that produces the patch a sink shows.
"""
