"""The pix2pix U-Net at any depth, for images smaller than 32 px.

:class:`~miabench.victims.nets.unet.UnetGenerator` (pix2pix's ``unet_<size>``) needs at
least 5 levels, so it cannot bring a 16 x 16 image to a 1 x 1 bottleneck. This generator
builds the same levels with the same widths (``ngf * min(2**k, 8)`` at level k, dropout on
the ``8 * ngf`` levels between the three outer ones and the innermost) for any depth >= 2;
at 5 levels and more it is the same network, parameter for parameter, as
``UnetGenerator`` (tests/victims/test_classifier.py checks it), so the output-dimensionality
points of results/shafran2021_claims/ share one recipe from 16 to 64 px.
"""

from __future__ import annotations

from torch import nn

from miabench.victims.nets.norm import init_weights
from miabench.victims.nets.unet import UnetGenerator, _SkipBlock


class AnyDepthUnetGenerator(UnetGenerator):
    """U-Net with ``num_downs`` >= 2 stride-2 levels (see the module docstring).

    Args:
        in_channels: input image channels.
        out_channels: output image channels.
        num_downs: down-sampling levels; an input of ``2**num_downs`` pixels reaches 1x1.
        ngf: filters of the outermost level; inner levels double up to ``8 * ngf``.
        norm: ``batch`` | ``instance`` | ``group`` | ``none``.
        dropout: dropout rate of the inner ``8 * ngf`` levels (as ``UnetGenerator``).
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        num_downs: int = 8,
        ngf: int = 64,
        norm: str = "batch",
        dropout: float = 0.5,
    ) -> None:
        # UnetGenerator.__init__ refuses fewer than 5 levels; the levels are built here
        nn.Module.__init__(self)
        if num_downs < 2:
            raise ValueError(f"num_downs must be >= 2 (got {num_downs})")
        self.num_downs = num_downs

        def width(level: int) -> int:
            return ngf * min(2**level, 8)

        # innermost first, as UnetGenerator builds them (same parameter order, same init)
        block = _SkipBlock(width(num_downs - 2), width(num_downs - 1), None, norm, 0.0)
        for level in range(num_downs - 2, 0, -1):
            # UnetGenerator's dropout levels: 8*ngf wide, neither innermost nor the 3 outer
            rate = dropout if level >= 4 else 0.0
            block = _SkipBlock(width(level - 1), width(level), block, norm, rate)
        self.model = _SkipBlock(
            ngf, ngf, block, norm, 0.0, in_channels, out_channels, outermost=True
        )
        init_weights(self)
