"""The checkpoint folder: the one place that knows the name of every file in it.

``python -m training`` writes it and the app reads it (data flows one way):

    <norm>.safetensors        weights and metadata (artifacts.weights), one per norm
    <norm>_history.json       per-epoch loss, accuracy and time (artifacts.results)
    <norm>_confusion.png      confusion matrix on the test set
    <norm>_misclassified.png  ten mistakes, true and predicted class
    results.json              every model's metadata (artifacts.results)
    photos.json               the models on a folder of real photos, per class (artifacts.photos)
    trials.json               every run behind a choice of setting (artifacts.trials), from search/journal.log
    search/journal.log        the search's studies, Optuna's journal (training.search)
    curves.png                loss and accuracy per epoch, all models
    mistakes.npz              every test image some model gets wrong (artifacts.mistakes)
    examples/<class>.png      one test image per class, the app's examples
    lab/<experiment>.json     the lab's measurements (artifacts.lab), with lab/<experiment>.png
    reference/                the reference network's checkpoint folder, laid out the same way
    grid/<arch>-<recipe>/     the other cells of the network x recipe grid, laid out the same way
"""

import os
from dataclasses import dataclass
from pathlib import Path

from model import DEFAULT_ARCH

CHECKPOINT_DIR_ENV = "CHECKPOINT_DIR"
DEFAULT_CHECKPOINT_DIR = Path("checkpoints")


def default_checkpoint_dir() -> Path:
    """$CHECKPOINT_DIR, else ./checkpoints."""
    return Path(os.environ.get(CHECKPOINT_DIR_ENV, DEFAULT_CHECKPOINT_DIR))


@dataclass(frozen=True)
class LabFolder:
    """``lab/``: each experiment's measurements and figure (``python -m training.lab --output-dir``)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    def results(self, experiment: str) -> Path:
        return self.root / f"{experiment}.json"

    def figure(self, experiment: str) -> Path:
        return self.root / f"{experiment}.png"


@dataclass(frozen=True)
class CheckpointFolder:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    def weights(self, norm: str) -> Path:
        return self.root / f"{norm}.safetensors"

    def history(self, norm: str) -> Path:
        return self.root / f"{norm}_history.json"

    def confusion(self, norm: str) -> Path:
        return self.root / f"{norm}_confusion.png"

    def misclassified(self, norm: str) -> Path:
        return self.root / f"{norm}_misclassified.png"

    @property
    def results(self) -> Path:
        return self.root / "results.json"

    @property
    def photos(self) -> Path:
        return self.root / "photos.json"

    @property
    def trials(self) -> Path:
        return self.root / "trials.json"

    @property
    def search_journal(self) -> Path:
        return self.root / "search" / "journal.log"

    @property
    def curves(self) -> Path:
        return self.root / "curves.png"

    @property
    def mistakes(self) -> Path:
        return self.root / "mistakes.npz"

    @property
    def examples(self) -> Path:
        return self.root / "examples"

    def example(self, class_name: str) -> Path:
        return self.examples / f"{class_name}.png"

    def example_files(self) -> list[Path]:
        return sorted(self.examples.glob("*.png"))

    @property
    def lab(self) -> LabFolder:
        return LabFolder(self.root / "lab")

    def seed_folder(self, seed: int) -> "CheckpointFolder":
        """Where the run with ``seed`` goes: this folder for seed 0 (the shipped models), else seeds/<seed>/."""
        return self if seed == 0 else CheckpointFolder(self.root / "seeds" / str(seed))

    def seed_folders(self) -> dict[int, "CheckpointFolder"]:
        """Every seed's folder that exists, by seed, seed 0 (this folder) first."""
        found = {0: self}
        for path in sorted((self.root / "seeds").glob("*")):
            if path.is_dir() and path.name.isdigit() and int(path.name) != 0:
                found[int(path.name)] = CheckpointFolder(path)
        return dict(sorted(found.items()))

    @property
    def reference(self) -> "CheckpointFolder":
        """The reference network's checkpoints (trained with our recipe), kept beside ours."""
        return CheckpointFolder(self.root / "reference")

    def grid_cell(self, arch: str, recipe: str) -> "CheckpointFolder":
        """Where the network ``arch`` trained with ``recipe`` goes: the shipped folder for our network with our
        recipe, ``reference/`` for the reference network with it, ``grid/<arch>-<recipe>/`` for the other cells."""
        if recipe == "ours":
            return self if arch == DEFAULT_ARCH else CheckpointFolder(self.root / arch)
        return CheckpointFolder(self.root / "grid" / f"{arch}-{recipe}")

