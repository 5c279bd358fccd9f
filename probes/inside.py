"""Inside a normalization layer: what it receives, what it gives, and which numbers share a mean and a variance.

Every normalization layer computes ``y = gamma * (x - mean) / sqrt(var + eps) + beta`` on a
stack of feature maps x of shape (N, C, H, W). They differ in which values share one mean
and variance (a *set*):

* ``BatchNorm2d``: one set per channel, over (N, H, W), the whole batch; at inference the
  running averages kept from training stand in for the set's statistics.
* ``GroupNorm(G, C)``: one set per image and group of C/G channels, over (C/G, H, W);
  ``GroupNorm(1, C)`` is layer norm, one set per image over (C, H, W).

The layers are found by type (every ``BatchNorm2d`` and ``GroupNorm``), in the order a forward
pass runs them, so any network built from these modules can be looked into. Their input and
output are captured with a forward hook on a private copy of the network (``NormProbe``):
a hook on a network that other requests are running would see their tensors too.
"""

import copy
import threading
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from probes.coupling import train_mode_copy

NORM_TYPES = (nn.BatchNorm2d, nn.GroupNorm)


@dataclass(frozen=True)
class NormLayer:
    index: int  # position among the network's norm layers, in the order a forward pass runs them
    name: str  # the module's qualified name, e.g. "features.3.body.0.1"
    channels: int
    height: int  # of the feature maps it normalizes, for a 32 x 32 input
    width: int
    groups: int | None  # GroupNorm's group count; None for BatchNorm

    @property
    def label(self) -> str:
        return f"norm layer {self.index + 1} · {self.channels} channels at {self.height}×{self.width} · {self.name}"


@dataclass(frozen=True)
class Sets:
    """Which values of an (N, C, H, W) stack share one mean and one variance."""

    count: int  # how many sets in the whole stack
    size: int  # how many values each holds
    per_image: int  # sets that hold values of one image only; 0 when every set spans the batch
    channels_each: int  # channels in one set
    images_each: int  # images in one set


class LayerNotFound(IndexError):
    """A norm layer index outside the network's; the message gives the valid range."""


class _Captured(Exception):  # noqa: N818 - raised to stop a forward pass once the layer has run, not an error
    pass


def _norm_names(network: nn.Module) -> dict[nn.Module, str]:
    return {module: name for name, module in network.named_modules() if isinstance(module, NORM_TYPES)}


@torch.no_grad()
def norm_layers(network: nn.Module, size: int = 32) -> list[NormLayer]:
    """The norm layers of ``network`` in the order a forward pass on a blank ``size`` x ``size`` image runs them.

    The dry run uses a copy in eval mode, so the network's running statistics and mode are untouched.
    """
    dry = copy.deepcopy(network).eval()
    names = _norm_names(dry)
    shapes: dict[str, tuple[int, ...]] = {}

    def record(name: str) -> Callable[..., None]:
        def hook(_: nn.Module, args: tuple[Tensor, ...], __: Tensor) -> None:  # returns None: output unchanged
            shapes.setdefault(name, tuple(args[0].shape))
        return hook

    handles = [module.register_forward_hook(record(name)) for module, name in names.items()]
    try:
        dry(torch.zeros(1, 3, size, size))
    finally:
        for handle in handles:
            handle.remove()
    layers = []
    by_name = {name: module for module, name in names.items()}
    for index, (name, shape) in enumerate(shapes.items()):  # dicts keep insertion order: the order they ran
        module = by_name[name]
        groups = module.num_groups if isinstance(module, nn.GroupNorm) else None
        layers.append(NormLayer(index, name, shape[1], shape[2], shape[3], groups))
    return layers


def sets(layer: NormLayer, batch: int) -> Sets:
    """The sets of ``layer`` for a batch of ``batch`` images."""
    values = layer.height * layer.width
    if layer.groups is None:
        return Sets(layer.channels, batch * values, 0, 1, batch)
    per_group = layer.channels // layer.groups
    return Sets(batch * layer.groups, per_group * values, layer.groups, per_group, 1)


def statistics(module: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """The mean and variance ``module`` normalizes ``x`` (N, C, H, W) with.

    BatchNorm: (C,) each, the batch's own in training mode (or without running averages),
    else the running averages. GroupNorm: (N, G) each, per image and group. Variances are
    the biased ones the layers divide by.
    """
    if isinstance(module, nn.BatchNorm2d):
        if module.training or module.running_mean is None:
            return x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), correction=0)
        return module.running_mean.clone(), module.running_var.clone()
    if isinstance(module, nn.GroupNorm):
        grouped = x.reshape(x.shape[0], module.num_groups, -1)
        return grouped.mean(dim=2), grouped.var(dim=2, correction=0)
    raise TypeError(f"not a normalization layer: {type(module).__name__}")


def affine(module: nn.Module) -> tuple[Tensor, Tensor]:
    """The layer's per-channel scale gamma and shift beta (ones and zeros when it learns none)."""
    channels = module.num_features if isinstance(module, nn.BatchNorm2d) else module.num_channels
    gamma = module.weight.detach().clone() if module.weight is not None else torch.ones(channels)
    beta = module.bias.detach().clone() if module.bias is not None else torch.zeros(channels)
    return gamma, beta


@torch.no_grad()
def capture(network: nn.Module, module: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """The input and output of ``module`` when ``network`` runs on ``x``; the pass stops right after the module.

    Copies are kept: the layer after a norm may change its output in place (``ReLU(inplace=True)``).
    Hooks ``network`` for the duration of the call, so nothing else may run it meanwhile.
    """
    seen: dict[str, Tensor] = {}

    def hook(_: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> None:
        seen["input"], seen["output"] = args[0].detach().clone(), output.detach().clone()
        raise _Captured

    handle = module.register_forward_hook(hook)
    try:
        network(x)
    except _Captured:
        pass
    finally:
        handle.remove()
    if not seen:
        raise RuntimeError("the norm layer did not run in the forward pass")
    return seen["input"], seen["output"]


@dataclass
class LayerReading:
    """One image's pass through one norm layer, and the statistics the layer used on it."""

    layer: NormLayer
    before: Tensor  # (C, H, W): the layer's input for the image, inference (eval) mode
    after: Tensor  # (C, H, W): its output
    mean: Tensor  # the statistics used at inference: (C,) BatchNorm's running averages, (G,) the image's groups
    var: Tensor
    gamma: Tensor  # (C,)
    beta: Tensor  # (C,)
    eps: float
    # BatchNorm in training mode, one row per batch (the image first in each): (B, C) each; None for GroupNorm.
    batch_mean: Tensor | None = None
    batch_var: Tensor | None = None
    batch_size: int = 1

    @property
    def is_batch_norm(self) -> bool:
        return self.layer.groups is None

    def channel_mean(self) -> Tensor:
        """The image's own mean of each channel over (H, W), before the layer."""
        return self.before.mean(dim=(1, 2))

    def sets(self) -> Sets:
        return sets(self.layer, self.batch_size)


class NormProbe:
    """Reads one trained network's norm layers on private copies, one request at a time.

    The copies (eval mode, and training mode for BatchNorm) are hooked while a request runs,
    so requests take turns (a lock); the network the caller shares with others is never hooked.
    """

    def __init__(self, network: nn.Module) -> None:
        self.layers = norm_layers(network)
        self.eval_copy = copy.deepcopy(network).eval()
        self.train_copy = train_mode_copy(network)
        self._lock = threading.Lock()

    def layer(self, index: int) -> NormLayer:
        if not 0 <= index < len(self.layers):
            raise LayerNotFound(f"there is no norm layer {index}: this network has {len(self.layers)}, "
                                f"numbered 0 to {len(self.layers) - 1}")
        return self.layers[index]

    def read(self, index: int, x: Tensor, batches: list[Tensor] | None = None) -> LayerReading:
        """Norm layer ``index`` on one standardized image ``x`` (1, 3, H, W), in eval mode.

        For a BatchNorm layer, also its training-mode statistics on each of ``batches``
        (standardized (K + 1, 3, H, W) batches, the image first), as a training step sees them.
        """
        layer = self.layer(index)
        with self._lock:
            module = self.eval_copy.get_submodule(layer.name)
            before, after = capture(self.eval_copy, module, x)
            mean, var = statistics(module, before)
            gamma, beta = affine(module)
            reading = LayerReading(layer, before[0], after[0], mean if layer.groups is None else mean[0],
                                   var if layer.groups is None else var[0], gamma, beta, float(module.eps))
            if layer.groups is None and batches:
                trained = self.train_copy.get_submodule(layer.name)
                rows = [statistics(trained, capture(self.train_copy, trained, batch)[0]) for batch in batches]
                reading.batch_mean = torch.stack([m for m, _ in rows])
                reading.batch_var = torch.stack([v for _, v in rows])
                reading.batch_size = len(batches[0])
        return reading
