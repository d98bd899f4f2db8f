"""Embedded datasets: built once, offline, from Fashion-MNIST and scikit-image's sample data.

Each builder writes a published layout (pix2pix aligned, ADE20K, PraNet polyps, WIDER FACE)
that the readers in :mod:`miabench.data` then serve unchanged; the datasets here are the
embedded-only ones (Fashion-MNIST classes and pseudo-identities, scenes with merged classes).
"""
