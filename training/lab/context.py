"""What an experiment's ``run`` gets: the command's options, the data, the device and the shipped models."""

import argparse
from dataclasses import dataclass, field
from functools import cached_property

import torch
from torch import nn

from artifacts.folder import CheckpointFolder
from artifacts.weights import load_checkpoint
from model import NORMS
from training.data import Split
from training.loop import pick_device


@dataclass
class LabContext:
    args: argparse.Namespace
    data: dict[str, Split] = field(default_factory=dict)  # "test", and "train" when an experiment trains

    @cached_property
    def device(self) -> torch.device:
        return pick_device(self.args.device)

    @cached_property
    def models(self) -> dict[str, nn.Module]:
        """The shipped (seed 0) BN, GN and LN models, in eval mode on the CPU."""
        folder = CheckpointFolder(self.args.checkpoint_dir)
        return {norm: load_checkpoint(folder.weights(norm))[0] for norm in NORMS}

    @cached_property
    def models_by_seed(self) -> dict[int, dict[str, nn.Module]]:
        """Every seed's BN, GN and LN models (seed 0 is the shipped one), unless --shipped-only."""
        folders = CheckpointFolder(self.args.checkpoint_dir).seed_folders()
        if getattr(self.args, "shipped_only", False):
            folders = {0: folders[0]}
        found = {0: self.models}
        for seed, folder in folders.items():
            if seed != 0 and all(folder.weights(norm).exists() for norm in NORMS):
                found[seed] = {norm: load_checkpoint(folder.weights(norm))[0] for norm in NORMS}
        return found
