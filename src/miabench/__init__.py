"""miabench: membership inference attack benchmarks on dense vision models."""

from miabench.utils.resolvers import register as _register_resolvers

__version__ = "0.1.0"

_register_resolvers()
