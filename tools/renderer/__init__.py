"""The avatar renderer, offline: the coarse and fine networks (torch), their training data, training, ncnn export and the evaluation of a bundle through the torch-free runtime. `python -m tools.renderer.train --rebuild` rebuilds models/avatars/default/.
"""
