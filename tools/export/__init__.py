"""Export helpers: torch -> ncnn through pnnx, a writer for small hand-made ncnn models, and the test-fixture models the suite runs on (named as fixtures, never shipped as defaults).
"""
