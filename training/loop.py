"""The training loop: one-cycle SGD on device-resident CIFAR-10, resumable per epoch."""

import ctypes
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

from artifacts.atomic import atomic_write
from model import build_model, network_fingerprint, standardize
from model.network import dirac_init, whitening_init, zero_residual_init
from training.config import TrainConfig
from training.data import Augmentation, Split, alternating_flips, augmented_batches, reflect_pad
from training.evaluate import evaluate
from training.muon import MuonWithSGD, muon_filters


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the state of the last finished epoch is kept."""


class ResumeMismatch(RuntimeError):
    """A saved state exists but was made with different settings."""


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but PyTorch sees no CUDA GPU; use --device cpu")
    return torch.device(name)


def describe_device(device: torch.device, threads: int | None = None) -> str:
    """The device in words, as results record it: the GPU's name, or the CPU with its thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    threads = threads or torch.get_num_threads()
    return f"CPU ({threads} thread{'s' if threads > 1 else ''})"


def keep_freed_memory() -> bool:
    """Let glibc keep freed memory for reuse instead of handing it back to the kernel.

    Every training step allocates and frees the same large activation buffers. By
    default glibc returns such blocks to the kernel at once, and the next step pays a
    page fault for every 4 KiB it touches again; on a 2-core CPU that costs about 10%
    of a training step and half of a test-set evaluation. Linux with glibc only; a
    no-op elsewhere. Returns whether the setting took effect.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (e.g. musl)
        return False
    trim_threshold, top_pad, mmap_threshold = -1, -2, -3  # mallopt parameter numbers, malloc.h
    # Some glibc versions cap the mmap threshold at 32 MiB. Setting the other two alone
    # would freeze the threshold at its 128 KiB start, worse than the default, so they
    # are only set once the threshold is.
    if not (libc.mallopt(mmap_threshold, 1 << 30) or libc.mallopt(mmap_threshold, 32 << 20)):
        return False
    return bool(libc.mallopt(trim_threshold, 1 << 30) and libc.mallopt(top_pad, 256 << 20))


def make_optimizer(model: nn.Module, config: TrainConfig, steps: int):
    # Weight decay on conv/linear weights only: decaying norm gains and biases only hurts.
    muon = {id(p): p for p in muon_filters(model)} if config.muon_lr else {}
    decay = [p for p in model.parameters() if p.ndim > 1 and id(p) not in muon]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if muon:
        optimizer: torch.optim.Optimizer = MuonWithSGD(
            [*groups, {"params": list(muon.values()), "lr": config.muon_lr, "muon": True}],
            lr=config.lr, momentum=config.momentum, nesterov=config.nesterov)
    else:
        optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov)
    if config.schedule == "constant":  # the published recipe has no scheduler
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    # One cycle, linear both ways: from peak/10 up to the peak over the warm-up, then down
    # to peak/1000 at the last step. Piecewise-linear interpolation also works for runs of
    # only a few steps, where torch's OneCycleLR divides by zero.
    warmup_end = max(config.warmup_fraction * steps - 1, 0.0)
    last = max(steps - 1, warmup_end)
    knots_x, knots_y = [0.0, warmup_end, last], [0.1, 1.0, 0.001]
    if config.schedule == "cosine":  # the same warm-up, then half a cosine down to peak/1000
        def factor(step: int) -> float:
            if step <= warmup_end:
                return float(np.interp(step, knots_x[:2], knots_y[:2]))
            progress = min((step - warmup_end) / max(last - warmup_end, 1e-9), 1.0)
            return 0.001 + (1 - 0.001) * 0.5 * (1 + math.cos(math.pi * progress))
    else:
        def factor(step: int) -> float:
            return float(np.interp(step, knots_x, knots_y))
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def ema_update(decay: float) -> Callable[[list[Tensor], list[Tensor], Tensor], None]:
    """``AveragedModel``'s update for an exponential moving average of every parameter and buffer.

    Floating-point tensors (weights, and BatchNorm's running mean and variance, which so follow
    the averaged weights) move ``1 - decay`` of the way to the trained network's; counters
    such as BatchNorm's ``num_batches_tracked`` are copied, not averaged.
    """
    @torch.no_grad()
    def update(averaged: list[Tensor], current: list[Tensor], _: Tensor) -> None:
        if averaged[0].is_floating_point():  # AveragedModel passes one dtype at a time
            torch._foreach_lerp_(averaged, current, 1 - decay)
        else:
            torch._foreach_copy_(averaged, current)

    return update


def averaged_model(model: nn.Module, decay: float) -> AveragedModel:
    return AveragedModel(model, multi_avg_fn=ema_update(decay), use_buffers=True)


def state_path(state_dir: Path, config: TrainConfig) -> Path:
    """One file per network, recipe, norm and seed, so runs of several grid cells can share ``state_dir``."""
    recipe = f"-{config.recipe}" if config.recipe != "ours" else ""
    seed = f"-seed{config.seed}" if config.seed != 0 else ""
    return Path(state_dir) / f"{config.arch}{recipe}-{config.norm}{seed}.pt"


def save_state(path: Path, state: dict[str, Any]) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_state(path: Path, config: TrainConfig, model: nn.Module) -> dict[str, Any] | None:
    """The saved state at ``path`` if it continues this run of this network; None if there is none."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated or foreign file can fail in many ways
        raise ResumeMismatch(
            f"{path} is not a readable training state ({error}). Pass --restart to start over."
        ) from error
    if not isinstance(state, dict):
        raise ResumeMismatch(f"{path} is not a training state. Pass --restart to start over.")
    # The network first: a state of an earlier version may also differ in settings whose
    # defaults changed with it, and matching those would not make it resumable.
    if state.get("network") != network_fingerprint(model):
        raise ResumeMismatch(
            f"{path} holds a run of another version of this network. Pass --restart to start "
            "over, or move the file away to keep it."
        )
    if state.get("config") != config.as_dict():
        differences = {
            key: (state.get("config", {}).get(key), value)
            for key, value in config.as_dict().items()
            if state.get("config", {}).get(key) != value
        }
        described = ", ".join(f"{key}: saved {old!r}, now {new!r}" for key, (old, new) in differences.items())
        raise ResumeMismatch(
            f"{path} holds a run with other settings ({described}). Re-run with the same "
            "settings to continue it, or pass --restart to start over."
        )
    return state


@dataclass
class TrainResult:
    model: nn.Module
    history: list[dict[str, float]]
    config: TrainConfig


@dataclass
class Run:
    """Everything that changes while training, and so everything a resume restores."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    data_rng: torch.Generator
    history: list[dict[str, float]]
    ema: AveragedModel | None = None  # the moving average of the weights, when --ema-decay is set

    @property
    def epoch(self) -> int:
        return len(self.history)

    @property
    def network(self) -> nn.Module:
        """What is evaluated and exported: the moving average when there is one, else the trained network."""
        return self.ema.module if self.ema is not None else self.model

    def state(self, config: TrainConfig, device: torch.device) -> dict[str, Any]:
        return {
            "config": config.as_dict(),
            "network": network_fingerprint(self.model),
            "epoch": self.epoch,
            "model": {k: v.cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "data_rng": self.data_rng.get_state(),
            "history": self.history,
            **({"ema": {k: v.cpu() for k, v in self.ema.state_dict().items()}} if self.ema is not None else {}),
        }

    def restore(self, state: dict[str, Any], path: Path, device: torch.device) -> None:
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            torch.set_rng_state(state["torch_rng"])
            self.data_rng.set_state(state["data_rng"])
            if self.ema is not None:
                self.ema.load_state_dict(state["ema"])
            history = list(state["history"])
        except (KeyError, ValueError, RuntimeError, TypeError) as error:
            raise ResumeMismatch(
                f"{path} was saved by another version of this training code and cannot be "
                f"continued ({type(error).__name__}: {error}). Pass --restart to start over."
            ) from error
        if device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        self.history = history


# The training images the whitening's patch statistics come from (the first of the split: no random numbers drawn).
WHITENING_IMAGES = 5000


def start_run(config: TrainConfig, steps_per_epoch: int, train_images: Tensor | None = None) -> Run:
    """A fresh run: the network, its optimizer and schedule, its EMA. ``train_images`` (uint8) are needed
    for ``config.whiten_init``."""
    torch.manual_seed(config.seed)
    model = build_model(config.arch, config.norm, config.gn_groups)
    if config.dirac_init:
        dirac_init(model)
    if config.whiten_init:
        if train_images is None:
            raise ValueError("--whiten-init needs the training images")
        whitening_init(model, standardize(train_images[:WHITENING_IMAGES].cpu(), config.mean, config.std))
    if config.zero_residual:
        zero_residual_init(model)
    optimizer, scheduler = make_optimizer(model, config, steps_per_epoch * config.epochs)
    ema = averaged_model(model, config.ema_decay) if config.ema_decay else None
    return Run(model, optimizer, scheduler, torch.Generator().manual_seed(config.seed), [], ema)


def move_to(run: Run, device: torch.device) -> None:
    run.model.to(device, memory_format=torch.channels_last)
    if run.ema is not None:
        run.ema.to(device, memory_format=torch.channels_last)
    # Optimizer state is created (or restored) on the CPU; it follows the parameters.
    for param_state in run.optimizer.state.values():
        for key, value in param_state.items():
            if torch.is_tensor(value):
                param_state[key] = value.to(device)


def augmentation(config: TrainConfig) -> Augmentation:
    return Augmentation(flips=config.flips, crop_scale=config.crop_scale, crop_ratio=config.crop_ratio,
                        color_jitter=config.color_jitter)


def train_epoch(run: Run, config: TrainConfig, padded: Tensor, labels: Tensor, path: Path,
                progress: bool, position: int = 0) -> dict[str, float]:
    """One pass over the training set; returns its loss, accuracy and speed."""
    device = labels.device
    run.model.train()
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    amp = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
           else torch.autocast("cpu", enabled=False))
    started = time.perf_counter()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    epoch = run.epoch + 1
    bar = tqdm(total=len(labels), desc=f"{config.norm} epoch {epoch}/{config.epochs}", unit="img",
               leave=False, disable=not progress, dynamic_ncols=True, position=position)
    # Which images start flipped, when flips alternate: fixed by the seed, so a resumed run flips the same ones.
    starts_flipped = alternating_flips(len(labels), config.seed) if config.flips == "alternate" else None
    for step, (inputs, batch_labels) in enumerate(
        augmented_batches(padded, labels, config.batch_size, run.data_rng, mean=config.mean, std=config.std,
                          augmentation=augmentation(config), epoch=run.epoch, starts_flipped=starts_flipped)
    ):
        with amp:
            logits = run.model(inputs)
            loss = loss_fn(logits.float(), batch_labels)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        run.scheduler.step()
        if run.ema is not None:
            run.ema.update_parameters(run.model)
        loss_sum += loss.detach() * len(batch_labels)
        correct += (logits.argmax(1) == batch_labels).sum()
        seen += len(batch_labels)
        bar.update(len(batch_labels))
        # Reading the loss forces a device sync, so check it every 20 steps only.
        if step % 20 == 0 or seen == len(labels):
            running_loss = loss_sum.item() / seen
            if not math.isfinite(running_loss):
                bar.close()
                raise TrainingDiverged(
                    f"the loss became {running_loss} in epoch {epoch}, step {step + 1}. "
                    f"Training stopped; the state after epoch {epoch - 1} is kept in {path}. "
                    "Try a lower --lr."
                )
            bar.set_postfix(loss=f"{running_loss:.3f}", acc=f"{correct.item() / seen:.1%}")
    bar.close()
    seconds = time.perf_counter() - started
    return {
        "train_loss": loss_sum.item() / seen,
        "train_accuracy": correct.item() / seen,
        "images_per_second": seen / seconds,
    }


def train(
    config: TrainConfig,
    train_split: Split,
    eval_split: Split,
    device: torch.device,
    state_dir: Path,
    restart: bool = False,
    on_epoch_end: Callable[[int], None] | None = None,
    progress: bool = True,
    position: int = 0,
    report: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train one network; continue from ``state_dir`` if a finished epoch was saved there.

    After every epoch the network is evaluated on ``eval_split``: the test set, or the
    validation split when ``config.validation`` (the history then says ``val_`` for ``test_``).
    ``position`` is the line of this run's progress bar when several runs share a terminal.
    ``report`` is given every epoch's record, in order, those of a resumed run's saved epochs first.
    With ``config.ema_decay`` the moving average is evaluated and returned.
    """
    evaluated = "val" if config.validation else "test"
    if config.train_subset:
        train_split = train_split.subset(config.train_subset)
    run = start_run(config, math.ceil(len(train_split) / config.batch_size), train_split.images)
    path = state_path(state_dir, config)
    state = None if restart else load_state(path, config, run.model)
    if state is not None:
        run.restore(state, path, device)
        if run.epoch < config.epochs:
            tqdm.write(f"Resuming {config.arch}/{config.norm} from {path} after epoch {run.epoch}")
            sys.stdout.flush()
    if report is not None:
        for record in run.history:
            report(record)
    move_to(run, device)
    train_split, eval_split = train_split.to(device), eval_split.to(device)
    padded = reflect_pad(train_split.images, config.crop_padding)
    started = time.perf_counter() - sum(h["seconds"] for h in run.history)

    while run.epoch < config.epochs:
        epoch_start = time.perf_counter()
        trained = train_epoch(run, config, padded, train_split.labels, path, progress, position)
        eval_loss, eval_accuracy = evaluate(run.network, eval_split, mean=config.mean, std=config.std)
        record = {
            "epoch": run.epoch + 1, "train_loss": trained["train_loss"],
            "train_accuracy": trained["train_accuracy"], f"{evaluated}_loss": eval_loss,
            f"{evaluated}_accuracy": eval_accuracy, "lr": run.scheduler.get_last_lr()[0],
            "images_per_second": trained["images_per_second"],
            "seconds": time.perf_counter() - epoch_start,
        }
        run.history.append(record)
        tqdm.write(
            f"{config.arch}/{config.norm} epoch {run.epoch:2d}/{config.epochs}  "
            f"train loss {record['train_loss']:.3f} acc {record['train_accuracy']:.2%}  "
            f"{evaluated} loss {eval_loss:.3f} acc {eval_accuracy:.2%}  "
            f"{record['images_per_second']:,.0f} img/s  elapsed {time.perf_counter() - started:,.0f}s",
        )
        sys.stdout.flush()  # keep a redirected log current
        save_state(path, run.state(config, device))
        if report is not None:
            report(record)
        if on_epoch_end is not None:
            on_epoch_end(run.epoch)
    return TrainResult(run.network.eval(), run.history, config)
