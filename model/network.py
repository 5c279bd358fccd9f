"""The CNNs, one class per architecture, each taking the normalization by name and its group count."""

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from model.inputs import NUM_CLASSES
from model.norms import make_norm


class ReferenceNet(nn.Module):
    """The reference network as published (39,490 parameters with BatchNorm).

    C1 C2 c3 P1 C4 C5 C6 c7 P2 C8 C9 C10 GAP c11, where upper case is a 3x3 conv,
    lower case a 1x1 conv and P a 2x2 max pool. C1, C2, C8, C9 and C10 are unpadded, so
    the maps shrink 32 -> 30 -> 28 before the first pool and 7 -> 5 -> 3 -> 1 after the
    second; C4, C5 and C6 are padded by 1. Every 3x3 conv is followed by ReLU -> norm ->
    dropout (0.1, the published ``dropout_value``); the 1x1 transitions c3 and c7 only mix
    channels before the pool, and c11 maps the pooled 40 channels to the 10 logits.
    """

    def __init__(self, norm: str, groups: int, dropout: float = 0.1) -> None:
        super().__init__()

        def block(cin: int, cout: int, padding: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=padding, bias=False),
                nn.ReLU(),
                make_norm(norm, cout, groups),
                nn.Dropout(dropout),
            )

        def transition(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.MaxPool2d(2))

        self.features = nn.Sequential(
            block(3, 10, 0), block(10, 20, 0), transition(20, 10),
            block(10, 20, 1), block(20, 30, 1), block(30, 40, 1), transition(40, 10),
            block(10, 20, 0), block(20, 30, 0), block(30, 40, 0),
        )
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(40, NUM_CLASSES, 1, bias=False), nn.Flatten()
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


# The activations a network of the registry can use, by the name its record gives.
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "gelu": nn.GELU,
    "silu": lambda: nn.SiLU(inplace=True),
}


def make_activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class StandardizedConv2d(nn.Conv2d):
    """A conv whose filters are used standardized: each filter's weights shifted to mean 0 and scaled to
    variance 1 at every forward pass (Qiao et al., "Micro-Batch Training with Batch-Channel Normalization and Weight
    Standardization", 2019). The norm after it no longer depends on the filters' sizes, which smooths the loss
    for the norms that compute their statistics per sample (GroupNorm with weight standardization is reported to
    close most of its gap to BatchNorm). No parameters of its own: the stored weights are the raw ones.

    Where no gradient can reach the weights (evaluation, the app's frozen models), the standardized filters
    are kept between calls until the weights change: recomputing them took about 45% of a single image's
    forward pass on a CPU."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._kept: tuple[Tensor, int, Tensor] | None = None  # (the weights read, their version, the filters)

    def standardized_weight(self) -> Tensor:
        weight = self.weight
        if weight.requires_grad and torch.is_grad_enabled():
            return standardize_filters(weight)
        if not self._still_kept(weight):
            # An ordinary tensor even under inference_mode: Grad-CAM later runs the same conv with autograd on,
            # which must be able to save the filters for its backward pass.
            with torch.inference_mode(False), torch.no_grad():
                self._kept = (weight.detach(), weight._version, standardize_filters(weight))
        return self._kept[2]

    def _still_kept(self, weight: Tensor) -> bool:
        # Any write to the weights bumps their version (an optimizer step, load_state_dict) or gives them new
        # storage (.to(), assigning .data). Holding the weights read keeps their storage alive, so no other
        # tensor can take its address: the same address and version are the same values. Only an in-place write
        # through .data (weight.data.copy_(...)) escapes the version count: write through the weight itself.
        if self._kept is None:
            return False
        read, version, _ = self._kept
        return (weight.data_ptr() == read.data_ptr() and weight._version == version and weight.shape == read.shape
                and weight.dtype == read.dtype and weight.device == read.device)

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.standardized_weight(), self.bias)


def standardize_filters(weight: Tensor) -> Tensor:
    mean = weight.mean(dim=(1, 2, 3), keepdim=True)
    variance = weight.var(dim=(1, 2, 3), keepdim=True, unbiased=False)
    return (weight - mean) * torch.rsqrt(variance + 1e-5)


class ChannelAttention(nn.Module):
    """Efficient channel attention (Wang et al., "ECA-Net", CVPR 2020): each channel of a map scaled by a gate
    in (0, 1) computed from the map's channel means, its own and its neighbours' (a 1-D conv across the channels),
    3 parameters. The gate is each image's own, so it adds no coupling between the images of a batch."""

    def __init__(self, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        gate = self.conv(x.mean(dim=(2, 3)).unsqueeze(1)).sigmoid()  # (N, 1, C)
        return x * gate.transpose(1, 2).unsqueeze(-1)


def separable_conv(cin: int, cout: int) -> nn.Sequential:
    """A depthwise-separable 3x3 conv: one 3x3 filter per input channel, then a 1x1 conv mixing them."""
    return nn.Sequential(nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False),
                         nn.Conv2d(cin, cout, 1, bias=False))


class ConvNormAct(nn.Sequential):
    def __init__(self, cin: int, cout: int, norm: str, groups: int, pool: bool = False,
                 activation: str = "relu", separable: bool = False, standardize: bool = False,
                 attention: bool = False) -> None:
        if separable and standardize:
            raise ValueError("weight standardization is for full 3x3 convs, not depthwise-separable ones")
        full_conv = StandardizedConv2d if standardize else nn.Conv2d
        conv = separable_conv(cin, cout) if separable else full_conv(cin, cout, 3, padding=1, bias=False)
        layers: list[nn.Module] = [conv]
        if pool:
            layers.append(nn.MaxPool2d(2))
        layers += [make_norm(norm, cout, groups), make_activation(activation)]
        if attention:
            layers.append(ChannelAttention())
        super().__init__(*layers)


class Residual(nn.Module):
    """x + f(x) with f two conv-norm-activation layers at constant width.

    With ``passes`` above 1 the block is applied that many times in a row with the same two
    convs, each later pass with norms of its own: more depth for no more than the norms'
    parameters. Each pass keeps its own norms so that BatchNorm's running statistics describe
    the activations of that pass, not a mixture of all of them.
    """

    def __init__(self, channels: int, norm: str, groups: int, activation: str = "relu",
                 separable: bool = False, passes: int = 1, standardize: bool = False,
                 attention: bool = False) -> None:
        super().__init__()
        if passes < 1:
            raise ValueError(f"a residual block is applied at least once (got {passes} passes)")
        if attention and passes > 1:
            raise ValueError("channel attention is not shared between a block's passes: give a repeated block none")
        self.body = nn.Sequential(*(
            ConvNormAct(channels, channels, norm, groups, activation=activation, separable=separable,
                        standardize=standardize, attention=attention)
            for _ in range(2)
        ))
        # Only a block that repeats has the attribute, so a single pass's layers (and the fingerprint saved
        # results carry, network_fingerprint) stay what they were before blocks could repeat.
        self.later_passes = nn.ModuleList(
            nn.ModuleList(nn.Sequential(make_norm(norm, channels, groups), make_activation(activation))
                          for _ in self.body)
            for _ in range(passes - 1)
        ) if passes > 1 else None

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.body(x)
        for norms in self.later_passes or ():
            branch = x
            for layer, norm_activation in zip(self.body, norms, strict=True):
                branch = norm_activation(layer[0](branch))  # layer[0]: the conv this pass shares
            x = x + branch
        return x


class ResidualNet(nn.Module):
    """The project's own network: a narrow relative of Myrtle's ResNet-9.

    ``plan`` lists the layers in order: ``"c32"`` is a 3x3 conv-norm-activation to 32
    channels, ``"c32p"`` the same with a 2x2 max pool between conv and norm (so the
    norm runs on a quarter of the pixels), and ``"r32"`` a residual block of two
    such convs at constant width (``"r32x2"``: the block applied twice with the same convs,
    ``Residual``'s ``passes``); ``"d32"`` and ``"s32"`` are ``"c32"`` and ``"r32"``
    with depthwise-separable convs (``separable_conv``). ``activation`` names one of
    ``ACTIVATIONS``. ``standardize`` makes every 3x3 conv but the first a ``StandardizedConv2d``;
    ``attention`` ends every conv-norm-activation with a ``ChannelAttention``.
    A global max pool and a linear layer give the logits.
    Downsampling by pooling needs no projection shortcut, so every parameter sits in
    a 3x3 conv. Only the first, 3-channel conv runs on the full 32x32 image and its
    output is pooled before the norm: full-resolution layers are what a CPU spends most
    of a training step on, so the capacity sits at 16x16 and 8x8 instead.
    """

    plan = ("c24p", "c32", "c32p", "r32", "c48p")

    def __init__(self, norm: str, groups: int, plan: tuple[str, ...] | None = None,
                 activation: str = "relu", standardize: bool = False, attention: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for token in plan or self.plan:
            # The first conv sees the image: its filters are the whitening start's (whitening_init), which
            # standardizing would undo.
            standardized = standardize and bool(layers)
            kind, pool = token[0], token.endswith("p")
            size, repeated, repeats = token[1:].rstrip("p").partition("x")
            if not size.isdigit() or (repeated and (kind not in "rs" or not repeats.isdigit())):
                raise ValueError(f"unknown layer {token!r} in plan")
            width, passes = int(size), int(repeats or 1)
            if kind in "cd":
                layers.append(ConvNormAct(channels, width, norm, groups, pool=pool, activation=activation,
                                          separable=kind == "d", standardize=standardized, attention=attention))
            elif kind in "rs" and not pool:
                if width != channels:
                    raise ValueError(f"residual block {token!r} must keep the width ({channels}) it receives")
                layers.append(Residual(width, norm, groups, activation=activation, separable=kind == "s",
                                       passes=passes, standardize=standardized, attention=attention))
            else:
                raise ValueError(f"unknown layer {token!r} in plan")
            channels = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(channels, NUM_CLASSES, bias=False)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


@torch.no_grad()
def dirac_init(network: nn.Module) -> int:
    """Identity (Dirac) initialization wherever a conv's shape allows; returns how many convs it set.

    A conv with at least as many outputs as inputs starts by passing each input channel
    through to the output channel of the same number (its other filters keep their random
    start); a depthwise conv starts as the identity on every channel. The network then
    begins close to the identity along its convs instead of a random map.
    """
    count = 0
    for module in network.modules():
        if not isinstance(module, nn.Conv2d):
            continue
        if module.groups == 1 and module.out_channels >= module.in_channels:
            nn.init.dirac_(module.weight[: module.in_channels])
        elif module.groups == module.in_channels == module.out_channels:
            nn.init.dirac_(module.weight, groups=module.groups)
        else:
            continue
        count += 1
    return count


@torch.no_grad()
def zero_residual_init(network: nn.Module) -> int:
    """Start every residual block as the identity: its last norm's scale (gamma) at zero, in each of its passes;
    returns how many blocks.

    The block's branch then adds nothing at first (GELU, SiLU and ReLU all map 0 to 0), so the
    network starts as its plain path and learns how much of each branch to add (Goyal et al.,
    "Accurate, Large Minibatch SGD", 2017, for BatchNorm; the same scale exists in GroupNorm).
    """
    count = 0
    for module in network.modules():
        if isinstance(module, Residual):
            for one_pass in [module.body, *(module.later_passes or ())]:
                last = [m for m in one_pass.modules() if isinstance(m, nn.BatchNorm2d | nn.GroupNorm)][-1]
                nn.init.zeros_(last.weight)
            count += 1
    return count


@torch.no_grad()
def whitening_init(network: nn.Module, inputs: Tensor, eps: float = 5e-4) -> int:
    """Start the first conv as a whitening of the image's patches; returns how many filters it set.

    The filters become the principal directions of the input's ``k x k`` patches (``inputs``:
    standardized images, as the network takes them), each scaled by one over the square root of
    its variance, and each also negated: half as many directions as filters, strongest first.
    The network then starts from features that are decorrelated and of equal variance, which
    short schedules learn from faster (Keller Jordan's airbench). The filters stay trainable.
    """
    first = next((m for m in network.modules() if isinstance(m, nn.Conv2d)), None)
    if first is None or first.groups != 1 or first.in_channels != inputs.shape[1]:
        raise ValueError("the network's first layer is not a full convolution of the input's channels")
    size = first.in_channels * first.kernel_size[0] * first.kernel_size[1]
    patches = nn.functional.unfold(inputs.float(), first.kernel_size).transpose(1, 2).reshape(-1, size)
    patches = patches - patches.mean(dim=0)
    covariance = patches.T @ patches / len(patches)
    variances, directions = torch.linalg.eigh(covariance.double())  # ascending
    count = (first.out_channels + 1) // 2
    if count > len(variances):
        raise ValueError(f"{first.out_channels} filters need {count} directions; patches have {len(variances)}")
    order = variances.flip(0)[:count]
    filters = (directions.flip(1)[:, :count] / (order + eps).sqrt()).T.float()
    filters = torch.cat([filters, -filters])[: first.out_channels]
    first.weight.copy_(filters.reshape(first.weight.shape))
    return first.out_channels
