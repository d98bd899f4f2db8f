"""The local audit web app (``python -m miabench.serve``): upload images, read how likely
each was in a model's training data. See docs/serve.md."""
