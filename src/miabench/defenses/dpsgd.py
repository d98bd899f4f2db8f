"""DP-SGD with Opacus inside Lightning: per-sample clipping, Gaussian noise, Poisson batches.

How it plugs into any victim, automatic or manual optimisation, without a separate loop:

- :meth:`DPSGD.prepare_module` runs ``ModuleValidator.fix`` on every private network
  (BatchNorm mixes samples, so it becomes GroupNorm) and reports what it fixed; it runs again
  when the trained victim is loaded, so the saved weights match.
- :meth:`DPSGD.prepare_datamodule` makes the training loader Poisson-sampled
  (``DPDataLoader``, sample rate q = batch size / members), and, for logical batches larger
  than ``max_physical_batch_size``, splits them with Opacus' ``BatchMemoryManager``
  machinery.
- a callback, at ``on_fit_start`` (after ``configure_optimizers``), attaches Opacus'
  per-sample gradient hooks (``GradSampleModule``) to every private network and wraps every
  optimizer Lightning built in a ``DPOptimizer`` (clip to ``max_grad_norm``, add
  N(0, (σ·max_grad_norm)²)).

Networks called several times per step (pix2pix's discriminator scores a fake and a real
pair, each conditioned on the member's input) get the sum of those calls' per-sample
gradients clipped as one per-sample gradient: Opacus' hooks accumulate ``grad_sample`` over
the calls before a step. Frozen networks (``requires_grad`` off while another optimizer is
toggled) record nothing.

Accounting. Each training batch is one Poisson sample. When k private optimizers step on
the same batch (pix2pix: D then G, k = 2), the release for that batch is an adaptive
composition of k Gaussian mechanisms on the same subsample, each with sensitivity C and noise
σC: together a Gaussian mechanism of noise multiplier σ/√k, subsampled once with rate q (the
joint mechanism, not k independently subsampled ones, which would understate ε). One RDP
accountant is stepped once per batch with (σ/√k, q); its ε at δ is logged per epoch as
``dp/epsilon`` and reported.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, default_collate

from miabench.defenses.base import Defense, DefenseNotApplicable, WrappedDataModule
from miabench.defenses.out_of_place import make_residuals_out_of_place
from miabench.utils.extras import missing_extra

try:  # the [dp] extra: a clear message instead of Hydra's "Error locating target"
    from opacus import GradSampleModule
    from opacus.accountants import create_accountant
    from opacus.accountants.utils import get_noise_multiplier
    from opacus.data_loader import DPDataLoader
    from opacus.optimizers import DPOptimizer
    from opacus.utils.batch_memory_manager import wrap_data_loader
    from opacus.validators import ModuleValidator
except ModuleNotFoundError as err:
    if err.name is None or not err.name.startswith("opacus"):
        raise
    raise missing_extra("dp") from err


class EmptySafeCollate:
    """Collate that replaces an empty Poisson batch by one random, data-independent sample.

    Poisson sampling draws empty batches (probability (1 - q)^N per step) and the step must
    still happen, so that its noise is released. Opacus' convolution per-sample gradients
    fail on a batch of size 0, and its empty-batch collate refuses miabench's ``sample_id``
    strings; this does what Opacus' ``rand_on_empty`` does: a batch of one sample of uniform
    random values (the same structure, id ``"<empty>"``). It depends on no member, so the
    privacy guarantee is unchanged; its clipped gradient is as small as any sample's.
    """

    def __init__(self, collate: Callable[[list[Any]], Any] | None) -> None:
        self.collate = collate or default_collate
        self.template: Any = None
        self.empty_batches = 0

    def __call__(self, batch: list[Any]) -> Any:
        if batch:
            out = self.collate(batch)
            if self.template is None:
                self.template = out
            return out
        if self.template is None:
            raise RuntimeError(
                "dpsgd: the first Poisson batch is empty; raise data.batch_size (the sample rate)"
            )
        self.empty_batches += 1
        return self._random(self.template)

    def _random(self, value: Any) -> Any:
        if torch.is_tensor(value):
            one = value[:1]
            if torch.is_floating_point(one):
                return torch.rand_like(one)
            return torch.randint_like(one, 0, 2)
        if isinstance(value, Mapping):
            return {k: self._random(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            if value and all(isinstance(v, str) for v in value):
                return ["<empty>"]
            if value and all(torch.is_tensor(v) for v in value):
                # one entry per sample (a detector's per-image boxes and flags): the one
                # random image gets none (an image without objects; random boxes could be
                # degenerate, which detectors refuse)
                return type(value)([value[0][:0]])
            return type(value)(self._random(v) for v in value)
        raise TypeError(f"dpsgd: cannot make a random batch of {type(value).__name__}")


def private_networks(module: nn.Module, names: Sequence[str] | None) -> list[str]:
    """Names of the networks to privatise: ``names``, or every child with trainable weights."""
    if names:
        children = dict(module.named_children())
        missing = [n for n in names if n not in children]
        if missing:
            raise DefenseNotApplicable(
                f"dpsgd: {type(module).__name__} has no child network(s) {missing} "
                f"(defense.training.networks); its children are {list(children)}"
            )
        return list(names)
    found = [
        name
        for name, child in module.named_children()
        if any(p.requires_grad for p in child.parameters())
    ]
    if not found:
        raise DefenseNotApplicable(f"dpsgd: {type(module).__name__} has no trainable network")
    return found


class _SkipAll:
    """Tells every DP optimizer whether the physical batch ends a logical batch
    (the ``optimizer`` BatchMemoryManager's sampler signals, fanned out to k optimizers)."""

    def __init__(self, callback: _DPCallback) -> None:
        self.callback = callback

    def signal_skip_step(self, do_skip: bool = True) -> None:
        for optimizer in self.callback.optimizers:
            optimizer.signal_skip_step(do_skip=do_skip)


class _DPCallback(pl.Callback):
    """Attaches per-sample gradients, DP optimizers and the accountant to a Lightning fit."""

    def __init__(self, defense: DPSGD) -> None:
        self.defense = defense
        self.optimizers: list[DPOptimizer] = []
        self.grad_samplers: list[GradSampleModule] = []
        self._handles: list[Any] = []
        self.accountant = create_accountant(defense.accountant)
        self.epsilons: list[float] = []
        self.optimizer_steps: list[int] = []
        self._pending = 0  # private optimizer steps taken on the current batch

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        d = self.defense
        if trainer.world_size > 1:
            # Each rank would draw its own Poisson batches and add its own noise, and the
            # averaged update is neither the mechanism accounted here nor one Opacus' DDP
            # optimizer (DistributedDPOptimizer) accounts without its distributed sampler.
            raise DefenseNotApplicable(
                f"dpsgd: DP-SGD under DDP ({trainer.world_size} processes) is not supported, "
                "as its privacy accounting assumes one process drawing the Poisson batches; "
                "train the private victim on one device (trainer=cpu or trainer=gpu)"
            )
        names = private_networks(pl_module, d.networks)
        d.networks_used = names
        covered = {id(p) for n in names for p in getattr(pl_module, n).parameters()}
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                if any(id(p) not in covered for p in group["params"] if p.requires_grad):
                    raise DefenseNotApplicable(
                        f"dpsgd: an optimizer of {type(pl_module).__name__} updates parameters "
                        f"outside the private networks {names} (defense.training.networks)"
                    )
        # Hooks on the victim's own submodules: the victim keeps calling its networks as
        # before and its state dict keeps its keys; the wrappers are kept here only.
        self.grad_samplers = [
            GradSampleModule(getattr(pl_module, n), batch_first=True, loss_reduction="mean")
            for n in names
        ]
        # A network frozen for this call (Lightning's toggle_optimizer while another
        # network steps, e.g. D while G's loss backpropagates through it) must not record
        # per-sample gradients: Opacus' backward hooks would find no stored activations.
        self._handles = [
            getattr(pl_module, n).register_forward_pre_hook(
                lambda net, _args, gsm=gsm: setattr(
                    gsm, "hooks_enabled", any(p.requires_grad for p in net.parameters())
                )
            )
            for n, gsm in zip(names, self.grad_samplers, strict=True)
        ]
        k = len(trainer.optimizers)
        if d.target_epsilon is not None:
            steps = int(trainer.max_epochs) * d.steps_per_epoch
            effective = get_noise_multiplier(
                target_epsilon=d.target_epsilon,
                target_delta=d.delta,
                sample_rate=d.sample_rate,
                steps=steps,
                accountant=d.accountant,
            )
            d.noise_multiplier = effective * math.sqrt(k)
        self.optimizers = [
            DPOptimizer(
                optimizer,
                noise_multiplier=d.noise_multiplier,
                max_grad_norm=d.max_grad_norm,
                expected_batch_size=d.expected_batch_size,
                loss_reduction="mean",
                secure_mode=d.secure_mode,
            )
            for optimizer in trainer.optimizers
        ]
        if len(self.optimizer_steps) != len(self.optimizers):
            # fresh training; a resumed one keeps the counts restored from its checkpoint
            # (load_state_dict runs before on_fit_start)
            self.optimizer_steps = [0] * len(self.optimizers)
        for i, optimizer in enumerate(self.optimizers):
            optimizer.attach_step_hook(lambda _opt, i=i: self._count(i))
        trainer.strategy.optimizers = self.optimizers

    def _count(self, index: int) -> None:
        self.optimizer_steps[index] += 1
        self._pending += 1

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        # Only the physical batch that ends a logical batch steps the optimizers.
        if self._pending:
            noise = self.defense.noise_multiplier / math.sqrt(self._pending)
            self.accountant.step(noise_multiplier=noise, sample_rate=self.defense.sample_rate)
            self.defense.mechanisms_per_step = self._pending
            self._pending = 0

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epsilon = self.epsilon()
        self.epsilons.append(epsilon)
        pl_module.log("dp/epsilon", epsilon, on_step=False, on_epoch=True)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for handle in self._handles:
            handle.remove()
        for sampler in self.grad_samplers:
            sampler.remove_hooks()
        for p in pl_module.parameters():
            p.grad_sample = None

    def epsilon(self) -> float:
        if not self.accountant.history:
            return 0.0
        return float(self.accountant.get_epsilon(delta=self.defense.delta))

    def state_dict(self) -> dict[str, Any]:
        # A resumed training continues the privacy ledger where it stopped.
        return {
            "history": [list(h) for h in self.accountant.history],
            "epsilons": self.epsilons,
            "optimizer_steps": self.optimizer_steps,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.accountant.history = [tuple(h) for h in state_dict["history"]]
        self.epsilons = list(state_dict["epsilons"])
        self.optimizer_steps = list(state_dict["optimizer_steps"])


class DPSGD(Defense):
    """Differentially private training of every network that sees member data.

    Give either ``noise_multiplier`` or ``target_epsilon`` (then σ is found by Opacus'
    ``get_noise_multiplier`` for the planned steps, as ``make_private_with_epsilon`` does).

    Args:
        max_grad_norm: per-sample clipping norm C.
        delta: δ of the reported (ε, δ).
        noise_multiplier: σ, noise std / C of each optimizer.
        target_epsilon: ε to reach after ``trainer.max_epochs`` epochs at ``delta``.
        max_physical_batch_size: split Poisson batches into physical batches of at most
            this many samples (BatchMemoryManager); ``None`` keeps them whole.
        networks: names of the victim's child networks to privatise; all trainable ones
            when empty (every optimizer's parameters must belong to one of them).
        accountant: Opacus accountant (``rdp``, ``prv``, ``gdp``).
        secure_mode: Opacus' cryptographically safe noise (slow).
    """

    name = "dpsgd"

    def __init__(
        self,
        max_grad_norm: float,
        delta: float,
        noise_multiplier: float | None = None,
        target_epsilon: float | None = None,
        max_physical_batch_size: int | None = None,
        networks: Sequence[str] | None = None,
        accountant: str = "rdp",
        secure_mode: bool = False,
    ) -> None:
        if (noise_multiplier is None) == (target_epsilon is None):
            raise ValueError(
                "defense.training: give exactly one of noise_multiplier and target_epsilon"
            )
        if max_grad_norm <= 0 or not 0 < delta < 1:
            raise ValueError(
                f"defense.training: need max_grad_norm > 0 and 0 < delta < 1, got "
                f"{max_grad_norm} and {delta}"
            )
        self.max_grad_norm = float(max_grad_norm)
        self.delta = float(delta)
        self.noise_multiplier = None if noise_multiplier is None else float(noise_multiplier)
        self.target_epsilon = target_epsilon
        self.max_physical_batch_size = max_physical_batch_size
        self.networks = list(networks or [])
        self.accountant = accountant
        self.secure_mode = secure_mode
        self.networks_used: list[str] = []
        self.module_fixes: dict[str, list[str]] = {}
        self.sample_rate = 0.0
        self.steps_per_epoch = 0
        self.expected_batch_size = 0
        self.mechanisms_per_step = 0
        self._callback = _DPCallback(self)
        self._collate: EmptySafeCollate | None = None

    def prepare_module(self, module: pl.LightningModule) -> None:
        self.module_fixes = {}
        for name in private_networks(module, self.networks):
            network = getattr(module, name)
            before = {n: type(m).__name__ for n, m in network.named_modules()}
            if ModuleValidator.validate(network, strict=False):
                network = ModuleValidator.fix(network)
                setattr(module, name, network)
            fixes = [
                f"{name}.{n}: {before[n]} → {type(m).__name__}"
                for n, m in network.named_modules()
                if n in before and before[n] != type(m).__name__
            ]
            left = ModuleValidator.validate(network, strict=False)
            if left:
                raise DefenseNotApplicable(
                    f"dpsgd: network {name!r} of {type(module).__name__} is not DP-compatible "
                    f"even after ModuleValidator.fix: {[str(e) for e in left]}"
                )
            # Opacus' backward hooks wrap module outputs in views that an in-place
            # activation (ReLU(inplace=True)) would overwrite; turning it off keeps the
            # same function and parameters.
            inplace = [m for m in network.modules() if getattr(m, "inplace", False) is True]
            for m in inplace:
                m.inplace = False
            # the same for the residual sums of torchvision's ResNet / MobileNetV3 blocks
            # (detector backbones, smp encoders); pix2pix-style networks have none
            residuals = make_residuals_out_of_place(network)
            self.module_fixes[name] = (
                fixes
                + (
                    [f"{len(inplace)} in-place activation(s) set to inplace=False"]
                    if inplace
                    else []
                )
                + ([f"{residuals} residual block(s) made out-of-place"] if residuals else [])
            )

    def prepare_datamodule(self, datamodule: Any) -> Any:
        loader = datamodule.train_dataloader()
        n = len(loader.dataset)
        if n == 0:
            raise DefenseNotApplicable("dpsgd: the training set is empty")
        # As DPDataLoader.from_data_loader: q = 1 / batches per epoch.
        self.steps_per_epoch = len(loader)
        self.sample_rate = 1.0 / self.steps_per_epoch
        self.expected_batch_size = int(n * self.sample_rate)

        def poisson(inner: DataLoader) -> DataLoader:
            dp_loader = DPDataLoader.from_data_loader(inner, distributed=False)
            self._collate = EmptySafeCollate(inner.collate_fn)
            dp_loader.collate_fn = self._collate
            if self.max_physical_batch_size:
                return wrap_data_loader(
                    data_loader=dp_loader,
                    max_batch_size=self.max_physical_batch_size,
                    optimizer=_SkipAll(self._callback),
                )
            return dp_loader

        return WrappedDataModule(datamodule, poisson)

    def callbacks(self) -> list[pl.Callback]:
        return [self._callback]

    def report(self) -> dict[str, Any]:
        cb = self._callback
        k = self.mechanisms_per_step or len(cb.optimizers) or 1
        # the accountant merges consecutive identical steps into (σ, q, count) entries
        steps = sum(int(count) for _, _, count in cb.accountant.history)
        return {
            "mechanism": "DP-SGD (Opacus), Poisson sampling",
            "epsilon": cb.epsilon(),
            "delta": self.delta,
            "accountant": self.accountant,
            "steps": steps,
            "sample_rate": self.sample_rate,
            "expected_batch_size": self.expected_batch_size,
            "max_physical_batch_size": self.max_physical_batch_size,
            "noise_multiplier": self.noise_multiplier,
            "target_epsilon": self.target_epsilon,
            "max_grad_norm": self.max_grad_norm,
            "networks": self.networks_used,
            "optimizer_steps": cb.optimizer_steps,
            "mechanisms_per_step": k,
            "effective_noise_multiplier": (
                None if self.noise_multiplier is None else self.noise_multiplier / math.sqrt(k)
            ),
            "composition": (
                f"{k} private optimizer step(s) per Poisson batch ({', '.join(self.networks_used)})"
                f" accounted jointly as one subsampled Gaussian with noise σ/√{k}, "
                "one accountant step per batch"
            ),
            "module_fixes": self.module_fixes,
            "empty_batches_replaced": self._collate.empty_batches if self._collate else 0,
            "epsilon_per_epoch": cb.epsilons,
        }
