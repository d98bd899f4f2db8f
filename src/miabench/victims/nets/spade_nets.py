"""SPADE networks (Park et al., CVPR 2019): SPADE residual generator and VAE image encoder.

Written from the paper and the structure of NVlabs/SPADE's ``generator.py``,
``architecture.py``, ``normalization.py`` and ``encoder.py``, because no maintained library
ships them:

* :class:`SPADE`: parameter-free normalisation, then a per-pixel scale and bias predicted
  from the (resized) segmentation map by a small conv net.
* :class:`SPADEResBlock`: two SPADE-ReLU-conv units with a (learned when the width changes)
  shortcut; spectral norm on the convolutions.
* :class:`SPADEGenerator`: from a down-sampled label map (or a VAE code), a stack of SPADE
  residual blocks with nearest up-sampling in between, 3x3 conv + tanh.
* :class:`ConvEncoder`: the image encoder of the multi-modal (VAE) variant.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

#: up-sampling steps of the generator per ``num_upsampling_layers`` setting.
_N_UP = {"normal": 5, "more": 6, "most": 7}


def _sn(module: nn.Module, enabled: bool) -> nn.Module:
    return nn.utils.parametrizations.spectral_norm(module) if enabled else module


def xavier_init(module: nn.Module, gain: float = 0.02) -> None:
    """SPADE's initialisation: Xavier-normal (gain 0.02) weights, zero biases.

    Spectrally normalised layers get their raw (``original``) weight initialised.
    """
    for m in module.modules():
        if not isinstance(m, (nn.Conv2d, nn.Linear)):
            continue
        if nn.utils.parametrize.is_parametrized(m, "weight"):
            weight = m.parametrizations.weight.original
        else:
            weight = m.weight
        nn.init.xavier_normal_(weight, gain=gain)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def _param_free_norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        # SPADE's default is synchronized batch norm; Lightning's sync_batchnorm=true
        # converts it under DDP.
        return nn.BatchNorm2d(channels, affine=False)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False)
    raise ValueError(f"param_free_norm must be batch or instance, got {kind!r}")


class SPADE(nn.Module):
    """Spatially-adaptive denormalisation: ``norm(x) * (1 + gamma(seg)) + beta(seg)``.

    Args:
        channels: channels of the normalised activation.
        label_channels: channels of the segmentation map.
        param_free_norm: ``batch`` (published) or ``instance``.
        hidden: width of the shared conv (128).
        kernel_size: 3 as published.
    """

    def __init__(
        self,
        channels: int,
        label_channels: int,
        param_free_norm: str = "batch",
        hidden: int = 128,
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.norm = _param_free_norm(param_free_norm, channels)
        self.shared = nn.Sequential(
            nn.Conv2d(label_channels, hidden, kernel_size, padding=pad), nn.ReLU()
        )
        self.gamma = nn.Conv2d(hidden, channels, kernel_size, padding=pad)
        self.beta = nn.Conv2d(hidden, channels, kernel_size, padding=pad)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        seg = F.interpolate(seg, size=x.shape[-2:], mode="nearest")
        actv = self.shared(seg)
        return self.norm(x) * (1 + self.gamma(actv)) + self.beta(actv)


class SPADEResBlock(nn.Module):
    """SPADE residual block (published: spectral norm, batch-norm SPADE, 3x3 kernels)."""

    def __init__(
        self,
        fin: int,
        fout: int,
        label_channels: int,
        param_free_norm: str = "batch",
        spectral_norm: bool = True,
        hidden: int = 128,
    ) -> None:
        super().__init__()
        fmid = min(fin, fout)
        self.learned_shortcut = fin != fout
        self.conv_0 = _sn(nn.Conv2d(fin, fmid, 3, padding=1), spectral_norm)
        self.conv_1 = _sn(nn.Conv2d(fmid, fout, 3, padding=1), spectral_norm)
        self.norm_0 = SPADE(fin, label_channels, param_free_norm, hidden)
        self.norm_1 = SPADE(fmid, label_channels, param_free_norm, hidden)
        if self.learned_shortcut:
            self.conv_s = _sn(nn.Conv2d(fin, fout, 1, bias=False), spectral_norm)
            self.norm_s = SPADE(fin, label_channels, param_free_norm, hidden)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        shortcut = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg), 0.2))
        return shortcut + dx


class SPADEGenerator(nn.Module):
    """SPADE's generator.

    Args:
        label_channels: channels of the semantic map (labels, + don't-care, + boundary).
        out_channels: output image channels.
        ngf: base width (64 as published); blocks run at 16, 16, 16, 8, 4, 2, 1 × ngf.
        num_upsampling_layers: ``normal`` (5 steps), ``more`` (6, SPADE's Cityscapes
            default) or ``most`` (7).
        crop_size: output width; with ``aspect_ratio`` it fixes the start grid (the
            width over 2**steps).
        aspect_ratio: width / height (2 for Cityscapes, 1 for ADE20K).
        z_dim: VAE code size when ``use_vae``; otherwise the start grid is a 3x3 conv of the
            down-sampled label map.
        use_vae: start from a latent code (multi-modal SPADE) instead of the label map.
        param_free_norm: ``batch`` (published) or ``instance``.
        spectral_norm: spectral norm on every residual conv (published).
        hidden: width of the SPADE conv nets (128).
    """

    def __init__(
        self,
        label_channels: int,
        out_channels: int = 3,
        ngf: int = 64,
        num_upsampling_layers: str = "normal",
        crop_size: int = 256,
        aspect_ratio: float = 1.0,
        z_dim: int = 256,
        use_vae: bool = False,
        param_free_norm: str = "batch",
        spectral_norm: bool = True,
        hidden: int = 128,
    ) -> None:
        super().__init__()
        if num_upsampling_layers not in _N_UP:
            raise ValueError(f"num_upsampling_layers must be one of {sorted(_N_UP)}")
        self.mode = num_upsampling_layers
        n_up = _N_UP[num_upsampling_layers]
        self.sw = crop_size // 2**n_up
        self.sh = round(self.sw / aspect_ratio)
        if self.sw < 1 or self.sh < 1:
            raise ValueError(
                f"crop_size {crop_size} is too small for {n_up} up-sampling steps "
                f"(num_upsampling_layers={num_upsampling_layers})"
            )
        self.use_vae = use_vae
        self.z_dim = z_dim
        nf = ngf
        if use_vae:
            self.fc = nn.Linear(z_dim, 16 * nf * self.sw * self.sh)
        else:
            self.fc = nn.Conv2d(label_channels, 16 * nf, 3, padding=1)

        def block(fin: int, fout: int) -> SPADEResBlock:
            return SPADEResBlock(fin, fout, label_channels, param_free_norm, spectral_norm, hidden)

        self.head_0 = block(16 * nf, 16 * nf)
        self.middle_0 = block(16 * nf, 16 * nf)
        self.middle_1 = block(16 * nf, 16 * nf)
        widths = [16 * nf, 8 * nf, 4 * nf, 2 * nf, nf]
        if num_upsampling_layers == "most":
            widths.append(nf // 2)
        self.ups = nn.ModuleList(block(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))
        self.conv_img = nn.Conv2d(widths[-1], out_channels, 3, padding=1)
        self.out_size = (self.sh * 2**n_up, self.sw * 2**n_up)
        xavier_init(self)

    def forward(self, seg: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """Generate an image in [-1, 1] from a semantic map (and a code when ``use_vae``)."""
        if tuple(seg.shape[-2:]) != self.out_size:
            raise ValueError(
                f"SPADEGenerator was built for {self.out_size} maps (crop_size, aspect_ratio), "
                f"got {tuple(seg.shape[-2:])}"
            )
        if self.use_vae:
            if z is None:
                z = torch.randn(seg.shape[0], self.z_dim, device=seg.device, dtype=seg.dtype)
            x = self.fc(z).view(-1, self.fc.out_features // (self.sh * self.sw), self.sh, self.sw)
        else:
            x = self.fc(F.interpolate(seg, size=(self.sh, self.sw), mode="nearest"))
        x = self.head_0(x, seg)
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = self.middle_0(x, seg)
        if self.mode in ("more", "most"):
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = self.middle_1(x, seg)
        for up in self.ups:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = up(x, seg)
        return torch.tanh(self.conv_img(F.leaky_relu(x, 0.2)))


class ConvEncoder(nn.Module):
    """SPADE's VAE image encoder: stride-2 3x3 convs down to 4x4, then μ and log σ².

    Args:
        in_channels: image channels.
        ndf: base width (64).
        z_dim: code size (256).
        input_size: images are resized to this square size first (256 as published);
            ``log2(input_size / 4)`` stride-2 layers bring it to 4x4.
        spectral_norm: spectral norm on the convolutions (published ``spectralinstance``).
    """

    def __init__(
        self,
        in_channels: int = 3,
        ndf: int = 64,
        z_dim: int = 256,
        input_size: int = 256,
        spectral_norm: bool = True,
    ) -> None:
        super().__init__()
        n_layers = int(math.log2(input_size // 4))
        if n_layers < 1 or 4 * 2**n_layers != input_size:
            raise ValueError(f"input_size must be 4 * 2**k with k >= 1, got {input_size}")
        self.input_size = input_size
        layers: list[nn.Module] = []
        cin = in_channels
        for i in range(n_layers):
            cout = ndf * min(2**i, 8)
            if i:
                layers.append(nn.LeakyReLU(0.2))
            layers += [
                _sn(nn.Conv2d(cin, cout, 3, 2, 1), spectral_norm),
                nn.InstanceNorm2d(cout, affine=False),
            ]
            cin = cout
        layers.append(nn.LeakyReLU(0.2))
        self.model = nn.Sequential(*layers)
        self.fc_mu = nn.Linear(cin * 16, z_dim)
        self.fc_logvar = nn.Linear(cin * 16, z_dim)
        xavier_init(self)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(mu, logvar)`` of an image in [-1, 1]."""
        if image.shape[-2:] != (self.input_size, self.input_size):
            image = F.interpolate(image, size=(self.input_size,) * 2, mode="bilinear")
        x = self.model(image).flatten(1)
        return self.fc_mu(x), self.fc_logvar(x)


def kld_loss(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL divergence of N(mu, exp(logvar)) from N(0, I), summed as in SPADE's ``KLDLoss``."""
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
