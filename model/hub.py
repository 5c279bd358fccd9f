"""The networks as Hugging Face Hub model repositories, and the commands' shared way of talking to the Hub.

A repository (or a local folder in the same layout) holds three files::

    model.safetensors   the network's state dict, the same tensor names as ``build_model`` gives
    config.json         {"arch", "norm", "gn_groups", "metadata"}: everything ``build_model`` needs,
                        and the checkpoint's metadata (accuracies, recipe, seed, classes, mean, std)
    README.md           the model card (``artifacts.model_card``)

``NormLabNet`` is any network of the registry (``model.ARCHITECTURES``) with
huggingface_hub's PyTorch mixin::

    model = NormLabNet.from_pretrained("OWNER/PREFIX-bn")   # or a local folder
    probabilities = model.predict(pixels)                   # (32, 32, 3) uint8 -> (1, 10)

A repository made for an architecture or norm this code does not know, a missing or broken
config.json, and weights that do not fit the network the config names are refused with a
``HubModelError`` saying which and what to do.

Model repositories are named ``OWNER/PREFIX-<suffix>`` (``model_location``): the suffix is the
norm (``bn``), or ``reference-bn`` for the reference network's models; a local folder holds
one subfolder per suffix. ``python -m training.publish`` writes them, ``python app.py
--models`` reads them.
"""

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from huggingface_hub import ModelCardData, PyTorchModelHubMixin
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from model.architectures import ARCHITECTURES, build_model, count_parameters
from model.inputs import CLASSES, MEAN, STD, pixels_to_input
from model.norms import NORMS

if TYPE_CHECKING:
    from huggingface_hub import HfApi

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"
# OWNER/NAME as the Hub spells repository ids (models and Spaces alike).
REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
MAX_REPO_ID = 96


class HubModelError(RuntimeError):
    """A model repository or folder cannot be loaded; the message says what is wrong and what to do."""


class HubUploadError(RuntimeError):
    """No token, or the Hub refused or could not be reached; one line."""


def is_repo_id(text: str) -> bool:
    return (bool(REPO_ID.match(text)) and ".." not in text and not text.endswith((".git", "."))
            and len(text) <= MAX_REPO_ID)


def model_location(models: str | Path, suffix: str) -> str:
    """Where the model ``suffix`` (``bn``, ``reference-gn``, ...) of ``models`` is: ``models/suffix`` when
    ``models`` is a local folder, else the repository ``models-suffix`` (``models`` is then OWNER/PREFIX)."""
    if Path(models).is_dir():
        return str(Path(models) / suffix)
    return f"{models}-{suffix}"


def _one_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _fetch(model_id: str, filename: str, **download: Any) -> Path:
    """``filename`` of a local folder or of a Hub repository (downloaded into the Hub's cache)."""
    if Path(model_id).is_dir():
        path = Path(model_id) / filename
        if not path.is_file():
            raise HubModelError(f"{model_id} has no {filename}: it is not a folder written by save_pretrained "
                                "(`python -m training.publish OWNER/PREFIX --dry-run --output-dir FOLDER` writes one)")
        return path
    if not is_repo_id(model_id):
        raise HubModelError(f"there is no folder {model_id}, and it is not a Hub repository id (OWNER/NAME) either")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(hf_hub_download(repo_id=model_id, filename=filename, **download))
    except RepositoryNotFoundError as error:
        raise HubModelError(f"there is no model repository {model_id} on the Hub (or it is private: log in with "
                            "`hf auth login`), and no folder of that name here") from error
    except EntryNotFoundError as error:  # also what an unreachable Hub without a cached copy raises
        reason = "not in the local cache and the Hub could not be reached" if isinstance(error, FileNotFoundError) \
            else "not in the repository"
        raise HubModelError(f"{filename} of {model_id}: {reason}") from error
    except Exception as error:  # noqa: BLE001 - network, permission or Hub errors: one line, not a traceback
        raise HubModelError(f"{filename} of {model_id} could not be fetched from the Hub "
                            f"({_one_line(error)})") from error


def read_config(model_id: str, **download: Any) -> dict[str, Any]:
    """The config.json of a repository or folder, checked: an object naming a known architecture and norm."""
    path = _fetch(model_id, CONFIG_FILE, **download)
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise HubModelError(f"the {CONFIG_FILE} of {model_id} is not readable JSON ({_one_line(error)}); "
                            "publish the model again") from error
    if not isinstance(config, dict) or not all(isinstance(config.get(key), str) for key in ("arch", "norm")):
        raise HubModelError(f"the {CONFIG_FILE} of {model_id} does not name an architecture and a norm "
                            "(\"arch\", \"norm\"): it was not written by this project's save_pretrained")
    if config["arch"] not in ARCHITECTURES:
        raise HubModelError(f"{model_id} was made for the architecture {config['arch']!r}, which this code does not "
                            f"know (it knows {', '.join(ARCHITECTURES)}): update the code, or load another model")
    if config["norm"] not in NORMS:
        raise HubModelError(f"{model_id} was made with the norm {config['norm']!r}, which this code does not know "
                            f"(it knows {', '.join(NORMS)}): update the code, or load another model")
    groups, metadata = config.get("gn_groups"), config.get("metadata")
    if groups is not None and (not isinstance(groups, int) or isinstance(groups, bool)):
        raise HubModelError(f"the {CONFIG_FILE} of {model_id} gives the group count as {groups!r}, not a whole number")
    if metadata is not None and not isinstance(metadata, dict):
        raise HubModelError(f"the {CONFIG_FILE} of {model_id} has metadata that is not an object")
    return config


# The card save_pretrained writes on its own; `python -m training.publish` replaces it with the full one.
CARD_TEMPLATE = """---
{{ card_data }}
---

A CIFAR-10 classifier of the CIFAR-10 Normalization Lab, saved with `save_pretrained`. It loads with the
project's code: `NormLabNet.from_pretrained(...)` from `model/hub.py`.
"""


class NormLabNet(
    nn.Module,
    PyTorchModelHubMixin,
    model_card_template=CARD_TEMPLATE,
    library_name="pytorch",
    license="mit",
    pipeline_tag="image-classification",
    tags=["image-classification", "cifar10", "normalization"],
):
    """A network of the registry, ``build_model(arch, norm, gn_groups)``, that saves and loads the Hub's way.

    ``metadata``: what is known of the trained weights (the checkpoint's metadata: accuracies,
    recipe, seed, and the classes, mean and std its input was standardized with); it travels
    in config.json. The weights are those of ``self.network``, under the same names as in a
    checkpoint file.
    """

    def __init__(self, arch: str, norm: str, gn_groups: int | None = None,
                 metadata: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.network = build_model(arch, norm, gn_groups)
        self.arch, self.norm = arch, norm
        # The count that was used, not None: a later change of the architecture's default must not
        # rebuild a saved GroupNorm model with other groups (the weights would still fit).
        self.gn_groups = (ARCHITECTURES[arch].gn_groups if gn_groups is None else gn_groups) if norm == "gn" else None
        self.metadata = dict(metadata or {})
        # What save_pretrained writes as config.json (the mixin would record the arguments as passed).
        self._hub_mixin_config = {"arch": arch, "norm": norm, "gn_groups": self.gn_groups, "metadata": self.metadata}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.metadata.get("classes", CLASSES))

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """(32, 32, 3) or (N, 32, 32, 3) uint8 RGB pixels -> (N, classes) probabilities, in ``self.classes`` order."""
        mean, std = tuple(self.metadata.get("mean", MEAN)), tuple(self.metadata.get("std", STD))
        device = next(self.network.parameters()).device
        with torch.inference_mode():
            return self.network(pixels_to_input(pixels, mean, std).to(device)).softmax(dim=1).cpu().numpy()

    @classmethod
    def card_data(cls) -> ModelCardData:
        """A copy of the card metadata the mixin gives every model (library, license, task, tags)."""
        return ModelCardData(**cls._hub_mixin_info.model_card_data.to_dict())

    def _save_pretrained(self, save_directory: Path) -> None:
        tensors = {name: t.detach().cpu().contiguous() for name, t in self.network.state_dict().items()}
        save_file(tensors, str(Path(save_directory) / WEIGHTS_FILE), metadata={"format": "pt"})

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, **kwargs: Any) -> "NormLabNet":
        """Rebuild the network a repository (OWNER/NAME) or a local folder names and load its weights.

        The config is read and checked first, so a repository made for another architecture
        or a broken config is refused in one ``HubModelError`` instead of a stack trace.
        """
        download = {key: kwargs[key] for key in ("revision", "cache_dir", "force_download", "token",
                                                 "local_files_only") if key in kwargs}
        read_config(str(pretrained_model_name_or_path), **download)
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision: str | None, cache_dir: str | Path | None,
                         force_download: bool, local_files_only: bool, token: str | bool | None,
                         map_location: str = "cpu", config: dict[str, Any] | None = None,
                         **model_kwargs: Any) -> "NormLabNet":
        if config is None:  # the mixin found no config.json; from_pretrained has checked it, so only a direct call
            raise HubModelError(f"{model_id} has no {CONFIG_FILE}")
        try:
            model = cls(config["arch"], config["norm"], config.get("gn_groups"), config.get("metadata"))
        except ValueError as error:  # a group count that does not divide the widths
            raise HubModelError(f"the {CONFIG_FILE} of {model_id} does not describe a network: {error}") from error
        path = _fetch(model_id, WEIGHTS_FILE, revision=revision, cache_dir=cache_dir, force_download=force_download,
                      token=token, local_files_only=local_files_only)
        try:
            tensors = load_file(str(path))
        except (SafetensorError, OSError) as error:
            raise HubModelError(f"the {WEIGHTS_FILE} of {model_id} is not a readable safetensors file "
                                f"({_one_line(error)}); publish the model again") from error
        network = f"{model.arch}/{model.norm} network"
        expected = model.network.state_dict()
        differing = sorted(set(expected) ^ set(tensors)) + sorted(
            name for name in expected.keys() & tensors.keys() if expected[name].shape != tensors[name].shape)
        if differing:
            raise HubModelError(f"the weights of {model_id} do not fit the {network} its {CONFIG_FILE} names "
                                f"(they differ at {', '.join(differing[:5])}): they were saved from another network "
                                "or another version of it; publish the model again")
        claimed = model.metadata.get("parameters")
        if claimed is not None and claimed != count_parameters(model.network):
            raise HubModelError(f"{model_id} says {claimed} parameters, but the {network} has "
                                f"{count_parameters(model.network)}: it was made by another version of the network")
        model.network.load_state_dict(tensors)
        return model.to(map_location).eval()


def megabytes(size: int) -> str:
    """A file size as the Hub commands print it."""
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.1f} kB"


def hub_api() -> "HfApi":
    """An HfApi with the user's token; ``HubUploadError`` saying how to log in when there is none."""
    from huggingface_hub import HfApi, get_token

    token = get_token()
    if not token:
        raise HubUploadError("no Hugging Face token: run `hf auth login` or set HF_TOKEN")
    return HfApi(token=token)


def upload(api: "HfApi", repo_id: str, folder: Path, repo_type: str, commit_message: str,
           allow_patterns: list[str] | None = None, **create: Any) -> str:
    """Create ``repo_id`` if needed and upload ``folder`` in one commit; returns the commit's URL.

    ``create``: options for ``create_repo`` (a Space's SDK). Any failure is one line.
    """
    try:
        api.create_repo(repo_id, repo_type=repo_type, exist_ok=True, **create)
        commit = api.upload_folder(repo_id=repo_id, repo_type=repo_type, folder_path=folder,
                                   allow_patterns=allow_patterns, commit_message=commit_message)
    except Exception as error:  # noqa: BLE001 - network, permission or Hub errors: one line, not a traceback
        raise HubUploadError(f"the upload to {repo_id} failed: {_one_line(error)}") from error
    return commit.commit_url
