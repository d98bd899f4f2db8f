"""SPADE's generator in the structure of NVlabs/SPADE's ``models/networks``.

:mod:`miabench.victims.nets.spade_nets` builds the same generator with readable names and
the current ``torch.nn.utils.parametrizations.spectral_norm``. The authors' released
``latest_net_G.pth`` files name the layers otherwise (``G_middle_0``, ``up_<i>``,
``norm_<i>.mlp_shared`` / ``mlp_gamma`` / ``mlp_beta`` / ``param_free_norm``) and store
spectral norm the old way (``weight_orig``, ``weight_u``, ``weight_v``), so this module
builds it in their structure, with ``torch.nn.utils.spectral_norm`` (which is what writes
those keys), and their files load key for key. ``victim.module.generator._target_``
selects it; the arguments are those of :class:`~miabench.victims.nets.spade_nets.SPADEGenerator`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from miabench.victims.nets.spade_nets import _N_UP, _param_free_norm


def _sn(module: nn.Module, enabled: bool) -> nn.Module:
    # the old hook-based spectral norm: the authors' key names (weight_orig/_u/_v)
    return nn.utils.spectral_norm(module) if enabled else module


class SPADE(nn.Module):
    """The authors' SPADE layer: ``param_free_norm``, ``mlp_shared``, ``mlp_gamma``,
    ``mlp_beta`` (see :class:`miabench.victims.nets.spade_nets.SPADE`)."""

    def __init__(
        self, channels: int, label_channels: int, param_free_norm: str = "batch", hidden: int = 128
    ) -> None:
        super().__init__()
        self.param_free_norm = _param_free_norm(param_free_norm, channels)
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_channels, hidden, 3, padding=1), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(hidden, channels, 3, padding=1)
        self.mlp_beta = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        seg = F.interpolate(seg, size=x.shape[-2:], mode="nearest")
        actv = self.mlp_shared(seg)
        return self.param_free_norm(x) * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)


class SPADEResnetBlock(nn.Module):
    """The authors' SPADE residual block (``conv_0``, ``conv_1``, ``conv_s``, ``norm_*``)."""

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
        if self.learned_shortcut:
            self.conv_s = _sn(nn.Conv2d(fin, fout, 1, bias=False), spectral_norm)
        self.norm_0 = SPADE(fin, label_channels, param_free_norm, hidden)
        self.norm_1 = SPADE(fmid, label_channels, param_free_norm, hidden)
        if self.learned_shortcut:
            self.norm_s = SPADE(fin, label_channels, param_free_norm, hidden)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        shortcut = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg), 0.2))
        return shortcut + dx


class SPADEGenerator(nn.Module):
    """SPADE's generator with the authors' layer names (``fc``, ``head_0``, ``G_middle_0``,
    ``G_middle_1``, ``up_0`` .. ``up_3`` (``up_4`` for ``most``), ``conv_img``).

    Args: as :class:`miabench.victims.nets.spade_nets.SPADEGenerator`. The released models
    take ``label_channels`` = classes (+1 don't-care, +1 instance edge map where used):
    ADE20K 151, COCO-Stuff 184, Cityscapes 36.
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
            raise ValueError(f"crop_size {crop_size} is too small for {n_up} up-sampling steps")
        self.use_vae, self.z_dim, self.ngf = use_vae, z_dim, ngf
        nf = ngf
        if use_vae:
            self.fc = nn.Linear(z_dim, 16 * nf * self.sw * self.sh)
        else:
            self.fc = nn.Conv2d(label_channels, 16 * nf, 3, padding=1)

        def block(fin: int, fout: int) -> SPADEResnetBlock:
            return SPADEResnetBlock(
                fin, fout, label_channels, param_free_norm, spectral_norm, hidden
            )

        self.head_0 = block(16 * nf, 16 * nf)
        self.G_middle_0 = block(16 * nf, 16 * nf)  # noqa: N815 - the authors' key name
        self.G_middle_1 = block(16 * nf, 16 * nf)  # noqa: N815
        widths = [16 * nf, 8 * nf, 4 * nf, 2 * nf, nf]
        if num_upsampling_layers == "most":
            widths.append(nf // 2)
        self.n_ups = len(widths) - 1
        for i, (fin, fout) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            setattr(self, f"up_{i}", block(fin, fout))
        self.conv_img = nn.Conv2d(widths[-1], out_channels, 3, padding=1)
        self.out_size = (self.sh * 2**n_up, self.sw * 2**n_up)

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
            x = self.fc(z).view(-1, 16 * self.ngf, self.sh, self.sw)
        else:
            x = self.fc(F.interpolate(seg, size=(self.sh, self.sw), mode="nearest"))

        def up(t: torch.Tensor) -> torch.Tensor:
            return F.interpolate(t, scale_factor=2, mode="nearest")

        x = up(self.head_0(x, seg))
        x = self.G_middle_0(x, seg)
        if self.mode in ("more", "most"):
            x = up(x)
        x = self.G_middle_1(x, seg)
        for i in range(self.n_ups):
            x = getattr(self, f"up_{i}")(up(x), seg)
        return torch.tanh(self.conv_img(F.leaky_relu(x, 0.2)))
