"""What every lab experiment shares: the trained models, and writing its results."""

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model import NORMS, load_checkpoint
from training.export import save_figure, write_json


def load_models(checkpoint_dir: Path) -> dict[str, nn.Module]:
    """The shipped BN, GN and LN models, in eval mode on the CPU."""
    return {norm: load_checkpoint(Path(checkpoint_dir) / f"{norm}.safetensors")[0] for norm in NORMS}


def write_results(output_dir: Path, name: str, results: dict[str, Any], figure=None) -> Path:
    """Write ``<name>.json`` (and ``<name>.png``) atomically; return the JSON path."""
    output_dir = Path(output_dir)
    results = {"experiment": name, "written": time.strftime("%Y-%m-%d %H:%M:%S"), **results}
    if figure is not None:
        save_figure(figure, output_dir / f"{name}.png")
    write_json(output_dir / f"{name}.json", results)
    return output_dir / f"{name}.json"


@torch.no_grad()
def probabilities(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    return model(inputs.contiguous(memory_format=torch.channels_last)).float().softmax(1)
