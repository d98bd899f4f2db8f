"""miabench: membership inference attack benchmarks on dense vision models."""

__version__ = "0.1.0"
