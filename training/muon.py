"""Muon for the convs' filters, SGD with momentum for every other weight: one optimizer, one schedule.

Muon (Keller Jordan, 2024; the optimizer of the CIFAR-10 speed records) replaces a filter bank's
momentum step by the nearest semi-orthogonal matrix, so every direction of the update moves by the
same amount. ``torch.optim.Muon`` takes 2-D matrices only, hence this one: a conv's filters are
orthogonalized as one (out channels) x (in channels x kernel area) matrix, as the speed records do.
"""

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

# The quintic Newton-Schulz iteration's coefficients from Jordan's Muon (also torch.optim.Muon's default):
# picked to push every singular value into about [0.7, 1.2] in five steps, which trains as well as exactly 1.
NEWTON_SCHULZ = (3.4445, -4.7750, 2.0315)


def orthogonalize(update: Tensor, steps: int = 5, eps: float = 1e-7) -> Tensor:
    """About the nearest semi-orthogonal matrix to ``update`` (its singular values brought near 1), same shape;
    a tensor of more than two dimensions is read as a matrix of its first dimension by the rest."""
    a, b, c = NEWTON_SCHULZ
    matrix = update.reshape(len(update), -1)
    wide = matrix.size(0) <= matrix.size(1)
    x = matrix if wide else matrix.T  # X X^T is then the smaller of the two products
    x = x / (x.norm() + eps)  # every singular value at most 1, where the iteration converges
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x if wide else x.T).reshape(update.shape)


def muon_filters(model: nn.Module) -> list[nn.Parameter]:
    """The filters ``--muon-lr`` trains with Muon: every conv's but the first's, which sees the pixels and starts
    as their whitening (as in the speed records)."""
    return [module.weight for module in model.modules() if isinstance(module, nn.Conv2d)][1:]


@torch.no_grad()
def scale_free(model: nn.Module) -> bool:
    """Whether ``model`` computes the same with every filter of ``muon_filters`` doubled, as it must for Muon to
    train it: ``MuonWithSGD`` sets those filters' scale, which is free only where a norm comes after each of them
    (not after a conv that gives the logits). Run in training mode on four random images; ``model`` (its mode,
    weights and buffers, such as BatchNorm's running statistics) and the random number generator are left as they
    were."""
    training = model.training
    buffers = [buffer.clone() for buffer in model.buffers()]
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    model.train()
    filters = muon_filters(model)
    outputs = []
    for factor in (1, 2):
        for weight in filters:
            weight.mul_(factor)
        with torch.random.fork_rng(devices=[]):  # the same dropout both times, and the caller's RNG untouched
            torch.manual_seed(0)
            outputs.append(model(images))
        for weight in filters:
            weight.div_(factor)
    model.train(training)
    for buffer, saved in zip(model.buffers(), buffers, strict=True):
        buffer.copy_(saved)
    before, after = outputs
    # The norms' eps (and a standardized conv's) moves the output by up to about 1e-3 of its size; a conv that no
    # norm follows moves it by as much as its size.
    return bool((after - before).abs().max() <= 0.01 * before.abs().max())


class MuonWithSGD(torch.optim.Optimizer):
    """SGD with (Nesterov) momentum, except in the parameter groups marked ``"muon": True``: there the momentum
    is orthogonalized (``orthogonalize``) and the step is ``lr`` times that. A Muon group's filters are first
    rescaled to norm sqrt(out channels), one per filter on average: their norm does not change what the network
    computes (a norm follows each of them), and fixing it keeps ``lr`` the angle they turn by per step, where
    otherwise it would shrink as the filters grow. ``weight_decay`` is SGD's (added to the gradient) and has no
    effect on a Muon group, whose scale is fixed."""

    def __init__(self, groups: Iterable[dict[str, Any]], lr: float, momentum: float, nesterov: bool) -> None:
        super().__init__(list(groups), {"lr": lr, "momentum": momentum, "nesterov": nesterov, "weight_decay": 0.0,
                                        "muon": False})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad
                if group["weight_decay"] and not group["muon"]:
                    grad = grad.add(param, alpha=group["weight_decay"])
                state = self.state[param]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(param)
                buffer = state["momentum_buffer"].mul_(group["momentum"]).add_(grad)
                direction = grad.add(buffer, alpha=group["momentum"]) if group["nesterov"] else buffer
                if group["muon"]:
                    param.mul_(len(param) ** 0.5 / param.norm().clamp_min(1e-12))
                    direction = orthogonalize(direction)
                param.add_(direction, alpha=-group["lr"])
        return loss
