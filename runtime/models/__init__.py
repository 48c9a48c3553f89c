"""ncnn model files: the sidecar (blob names, shapes, sha256, recipe), its verification, and
`NcnnModel`, which checks the declared shapes before the first frame. Stages build on it.
"""
