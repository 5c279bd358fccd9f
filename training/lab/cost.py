"""What each normalization costs: time per batch and memory, measured side by side.

The three networks run in interleaved rounds (BN, GN, LN, BN, GN, LN, ...), so a
busy machine slows all three alike; each number is the median over rounds. Memory
is the size of the activations autograd keeps for the backward pass (the part of
training memory that depends on the norm), and on CUDA also the peak allocated.
"""

import time
from statistics import median
from typing import Any

import torch
from torch import nn

from model import DEFAULT_ARCH, NORMS, build_model, count_parameters
from training.figures import pyplot
from training.lab.context import LabContext
from training.loop import describe_device


def saved_for_backward_bytes(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> int:
    """Bytes of the tensors autograd stores during one training forward pass."""
    seen: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()  # shared storages count once
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = nn.functional.cross_entropy(model(inputs), labels)
    loss.backward()
    return sum(seen.values())


def forward(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> None:
    with torch.no_grad():
        model.eval()(inputs)


def train_step(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> None:
    model.train()
    model.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(inputs), labels).backward()



def run(context: LabContext) -> dict[str, Any]:
    return measure(context.device, rounds=context.args.rounds)

def measure(device: torch.device, arch: str = DEFAULT_ARCH, batch_sizes: tuple[int, ...] = (32, 256),
            rounds: int = 5, steps: int = 5) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for batch_size in batch_sizes:
        inputs = torch.randn(batch_size, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
        labels = torch.randint(0, 10, (batch_size,), device=device)
        models = {norm: build_model(arch, norm).to(device, memory_format=torch.channels_last) for norm in NORMS}
        times: dict[str, dict[str, list[float]]] = {norm: {"forward": [], "train_step": []} for norm in NORMS}
        for _ in range(rounds):
            for norm, model in models.items():
                for kind, run in (("forward", forward), ("train_step", train_step)):
                    times[norm][kind].append(_seconds_per_call(run, model, inputs, labels, steps))
        per_norm = {}
        for norm, model in models.items():
            entry = {
                "parameters": count_parameters(model),
                "forward_ms": 1000 * median(times[norm]["forward"]),
                "train_step_ms": 1000 * median(times[norm]["train_step"]),
                "saved_for_backward_mb": saved_for_backward_bytes(model.train(), inputs, labels) / 2**20,
            }
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
                train_step(model, inputs, labels)
                torch.cuda.synchronize(device)
                entry["cuda_peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
            per_norm[norm] = entry
        for entry in per_norm.values():
            for key in ("forward_ms", "train_step_ms", "saved_for_backward_mb"):
                entry[key.rsplit("_", 1)[0] + "_vs_bn"] = entry[key] / per_norm["bn"][key]
        results[str(batch_size)] = per_norm
    return {
        "setup": {"device": describe_device(device), "arch": arch, "rounds": rounds, "steps_per_round": steps,
                  "threads": torch.get_num_threads()},
        "results": results,
    }


def _seconds_per_call(run, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, steps: int) -> float:
    run(model, inputs, labels)  # warm-up: allocator and kernel choice
    _synchronize(inputs.device)
    started = time.perf_counter()
    for _ in range(steps):
        run(model, inputs, labels)
    _synchronize(inputs.device)
    return (time.perf_counter() - started) / steps


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def figure(measured: dict[str, Any]):
    plt = pyplot()
    results = measured["results"]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    panels = (("forward_ms", "Forward, eval mode (ms/batch)"), ("train_step_ms", "Forward + backward (ms/batch)"),
              ("saved_for_backward_mb", "Activations kept for backward (MB)"))
    batch_sizes = list(results)
    width = 0.26
    for axis, (key, title) in zip(axes, panels, strict=True):
        for offset, norm in enumerate(NORMS):
            values = [results[b][norm][key] for b in batch_sizes]
            bars = axis.bar([i + (offset - 1) * width for i in range(len(batch_sizes))], values, width,
                            color=NORMS[norm].colour, label=NORMS[norm].title)
            for bar, value in zip(bars, values, strict=True):
                axis.annotate(f"{value:.1f}", (bar.get_x() + bar.get_width() / 2, value), ha="center",
                              va="bottom", fontsize=7)
        axis.set_xticks(range(len(batch_sizes)), [f"batch {b}" for b in batch_sizes])
        axis.set_title(title, fontsize=10)
        axis.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Cost of each normalization on {measured['setup']['device']} "
                 f"({measured['setup']['arch']} network, median of {measured['setup']['rounds']} rounds)", fontsize=10)
    fig.tight_layout()
    return fig
