"""Hydra configs, shipped inside the package; a package so Hydra finds them as pkg://miabench.conf."""
