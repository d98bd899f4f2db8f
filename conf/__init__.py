"""Hydra configs (top-level conf/), shipped as the package miabench.conf.

A package, so that Hydra finds them as pkg://miabench.conf from a wheel or an editable install.
"""
