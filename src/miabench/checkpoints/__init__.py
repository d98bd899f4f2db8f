"""Read trained models as their authors released them (issue 28: audit the model you have).

One reader per released layout, each named after its authors' code; all share
:mod:`miabench.checkpoints.base` (safe load, prefix handling, strict key/shape check, sha256).
"""
