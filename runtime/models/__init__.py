"""ncnn model wrappers: sidecar + sha256 verification, one small class per model."""
