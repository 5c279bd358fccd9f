"""The training loop: one-cycle SGD on device-resident CIFAR-10, resumable per epoch."""

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from model import build_model
from model.checkpoint import atomic_write
from training.data import Split, batches, normalize, random_crop_flip, reflect_pad
from training.evaluate import evaluate


@dataclass(frozen=True)
class TrainConfig:
    arch: str = "residual"
    norm: str = "bn"
    epochs: int = 20
    batch_size: int = 256
    lr: float = 0.2
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    warmup_fraction: float = 0.25
    crop_padding: int = 4
    seed: int = 0
    train_subset: int | None = None  # first N training images only (tests, quick trials)


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


def make_optimizer(model: nn.Module, config: TrainConfig, steps: int):
    # Weight decay on conv/linear weights only: decaying norm gains and biases only hurts.
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    optimizer = torch.optim.SGD(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr, momentum=config.momentum, nesterov=True,
    )
    # One cycle, linear both ways: from peak/10 up to the peak over the warm-up, then down
    # to peak/1000 at the last step. Piecewise-linear interpolation also works for runs of
    # only a few steps, where torch's OneCycleLR divides by zero.
    warmup_end = max(config.warmup_fraction * steps - 1, 0.0)
    knots_x, knots_y = [0.0, warmup_end, max(steps - 1, warmup_end)], [0.1, 1.0, 0.001]
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: float(np.interp(step, knots_x, knots_y))
    )
    return optimizer, scheduler


def state_path(state_dir: Path, config: TrainConfig) -> Path:
    return Path(state_dir) / f"{config.arch}-{config.norm}.pt"


def save_state(path: Path, state: dict[str, Any]) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_state(path: Path, config: TrainConfig) -> dict[str, Any] | None:
    if not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state["config"] != asdict(config):
        differences = {
            key: (state["config"].get(key), value)
            for key, value in asdict(config).items()
            if state["config"].get(key) != value
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


def train(
    config: TrainConfig,
    train_split: Split,
    test_split: Split,
    device: torch.device,
    state_dir: Path,
    restart: bool = False,
    on_epoch_end: Callable[[int], None] | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train one network; continue from ``state_dir`` if a finished epoch was saved there."""
    if config.train_subset:
        train_split = train_split.subset(config.train_subset)
    torch.manual_seed(config.seed)
    model = build_model(config.arch, config.norm)
    steps_per_epoch = math.ceil(len(train_split) / config.batch_size)
    optimizer, scheduler = make_optimizer(model, config, steps_per_epoch * config.epochs)
    data_rng = torch.Generator().manual_seed(config.seed)
    history: list[dict[str, float]] = []
    start_epoch = 0

    path = state_path(state_dir, config)
    state = None if restart else load_state(path, config)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        data_rng.set_state(state["data_rng"])
        if device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        history, start_epoch = state["history"], state["epoch"]
        if start_epoch < config.epochs:
            print(f"Resuming {config.arch}/{config.norm} from {path} after epoch {start_epoch}")

    on_cuda = device.type == "cuda"
    model = model.to(device, memory_format=torch.channels_last)
    # Optimizer state was created on the CPU; move it with the parameters.
    for param_state in optimizer.state.values():
        for key, value in param_state.items():
            if torch.is_tensor(value):
                param_state[key] = value.to(device)
    train_split, test_split = train_split.to(device), test_split.to(device)
    padded = reflect_pad(train_split.images, config.crop_padding)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if on_cuda else torch.autocast("cpu", enabled=False)
    started = time.perf_counter() - sum(h["seconds"] for h in history)

    for epoch in range(start_epoch, config.epochs):
        model.train()
        epoch_start = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        bar = tqdm(
            total=len(train_split), desc=f"{config.norm} epoch {epoch + 1}/{config.epochs}",
            unit="img", leave=False, disable=not progress, dynamic_ncols=True,
        )
        order = Split(torch.arange(len(train_split), device=device), train_split.labels)
        for step, (index, labels) in enumerate(batches(order, config.batch_size, data_rng)):
            images = random_crop_flip(padded[index], 32, data_rng)
            inputs = normalize(images).contiguous(memory_format=torch.channels_last)
            with amp:
                logits = model(inputs)
                loss = loss_fn(logits.float(), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += loss.detach() * len(labels)
            correct += (logits.argmax(1) == labels).sum()
            seen += len(labels)
            bar.update(len(labels))
            if step % 20 == 0 or seen == len(train_split):
                running_loss = loss_sum.item() / seen
                if not math.isfinite(running_loss):
                    bar.close()
                    raise TrainingDiverged(
                        f"the loss became {running_loss} in epoch {epoch + 1}, step {step + 1}. "
                        f"Training stopped; the state after epoch {epoch} is kept in {path}. "
                        "Try a lower --lr."
                    )
                bar.set_postfix(loss=f"{running_loss:.3f}", acc=f"{correct.item() / seen:.1%}")
        bar.close()
        train_seconds = time.perf_counter() - epoch_start
        test_loss, test_acc = evaluate(model, test_split)
        record = {
            "epoch": epoch + 1,
            "train_loss": loss_sum.item() / seen,
            "train_accuracy": correct.item() / seen,
            "test_loss": test_loss,
            "test_accuracy": test_acc,
            "lr": scheduler.get_last_lr()[0],
            "images_per_second": seen / train_seconds,
            "seconds": time.perf_counter() - epoch_start,
        }
        history.append(record)
        print(
            f"{config.arch}/{config.norm} epoch {epoch + 1:2d}/{config.epochs}  "
            f"train loss {record['train_loss']:.3f} acc {record['train_accuracy']:.2%}  "
            f"test loss {test_loss:.3f} acc {test_acc:.2%}  "
            f"{record['images_per_second']:,.0f} img/s  elapsed {time.perf_counter() - started:,.0f}s",
            flush=True,
        )
        save_state(path, {
            "config": asdict(config),
            "epoch": epoch + 1,
            "model": {k: v.cpu() for k, v in model.state_dict().items()},
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if on_cuda else None,
            "data_rng": data_rng.get_state(),
            "history": history,
        })
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1)
    return TrainResult(model.eval(), history, config)
