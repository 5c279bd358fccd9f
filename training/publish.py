"""Publish the trained models as Hugging Face Hub model repositories: weights, config and model card.

    hf auth login                                              # once (or set HF_TOKEN)
    python -m training.publish OWNER/PREFIX                    # OWNER/PREFIX-bn, -gn, -ln (and -reference-bn, ...)
    python -m training.publish OWNER/PREFIX --dry-run          # list every file and its size; no network
    python -m training.publish OWNER/PREFIX --dry-run --output-dir hub   # and keep the folders in hub/

Each model's folder is built in a temporary folder: ``save_pretrained`` (``model.hub.NormLabNet``:
model.safetensors and config.json) and the model card (``artifacts.model_card``: README.md,
generated from the checkpoint folder). The models are the checkpoint folder's three norms and,
when they are shipped in ``reference/``, the reference network's, as ``OWNER/PREFIX-reference-bn``
and so on. ``--output-dir`` keeps the folders, one subfolder per model (``bn/``, ``reference-bn/``):
the layout ``python app.py --models FOLDER`` reads.
"""

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path
from typing import Any, NoReturn

from artifacts.atomic import write_bytes
from artifacts.folder import DEFAULT_CHECKPOINT_DIR, CheckpointFolder
from artifacts.model_card import model_card, write_model_card
from artifacts.weights import CheckpointError, load_checkpoint
from model import NORMS
from model.hub import (
    CARD_FILE,
    CONFIG_FILE,
    WEIGHTS_FILE,
    HubUploadError,
    NormLabNet,
    hub_api,
    is_repo_id,
    megabytes,
    upload,
)
from training.config import RECIPES, TrainConfig, command_for

FILES = (CARD_FILE, CONFIG_FILE, WEIGHTS_FILE)  # what each model repository holds
REFERENCE = "reference"


def fail(message: str) -> NoReturn:
    raise SystemExit(f"python -m training.publish: error: {message}")


def models_to_publish(folder: CheckpointFolder) -> dict[str, tuple[CheckpointFolder, str]]:
    """{suffix: (checkpoint folder, norm)}: every norm of ``folder``, and those the reference network ships.

    A norm missing from ``folder`` fails with the command that trains it; the reference
    network's models are published only where their weights are there.
    """
    absent = [str(folder.weights(norm)) for norm in NORMS if not folder.weights(norm).is_file()]
    if absent:
        fail(f"{', '.join(absent)} not found: train the models with `python -m training` first")
    models = {norm: (folder, norm) for norm in NORMS}
    models.update({f"{REFERENCE}-{norm}": (folder.reference, norm) for norm in NORMS
                   if folder.reference.weights(norm).is_file()})
    return models


def training_command(network: NormLabNet) -> str:
    """The command that trains the model again, every setting spelled out, folders as PATH."""
    metadata = network.metadata
    config = dataclasses.replace(TrainConfig.from_record({**metadata, "norm": network.norm, "arch": network.arch}),
                                 epochs=metadata["epochs"], seed=metadata.get("seed", 0),
                                 validation="validation_split" in metadata)
    return f"{command_for(config)} --output-dir PATH"


def build(models: dict[str, tuple[CheckpointFolder, str]], prefix: str, root: Path) -> dict[str, Path]:
    """Write each model's repository folder under ``root`` (``root/<suffix>/``); {repo id: folder}."""
    built = {}
    for suffix, (folder, norm) in models.items():
        try:
            trained, metadata = load_checkpoint(folder.weights(norm))
        except CheckpointError as error:
            fail(str(error))
        network = NormLabNet(metadata["arch"], norm, metadata.get("gn_groups"), metadata)
        network.network.load_state_dict(trained.state_dict())
        repo_id = f"{prefix}-{suffix}"
        siblings = [f"{prefix}-{other}" for other, (other_folder, _) in models.items()
                    if other_folder == folder and other != suffix]
        target = root / suffix
        network.save_pretrained(target)
        card = model_card(folder, norm, repo_id, RECIPES[metadata.get("recipe", "ours")].description,
                          training_command(network), siblings)
        write_model_card(target / CARD_FILE, card)  # in place of the short card save_pretrained wrote
        built[repo_id] = target
    return built


def keep(built: dict[str, Path], output_dir: Path) -> None:
    """Copy the built folders into ``output_dir``, each file atomically."""
    for folder in built.values():
        for name in FILES:
            write_bytes(output_dir / folder.name / name, (folder / name).read_bytes())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.publish", description=__doc__.split("\n\n")[0])
    parser.add_argument("prefix", metavar="OWNER/PREFIX",
                        help="the repositories are OWNER/PREFIX-bn, -gn, -ln (and -reference-bn, ...)")
    parser.add_argument("--dry-run", action="store_true", help="list every file and its size; no network")
    parser.add_argument("--checkpoint-dir", type=Path, default=DEFAULT_CHECKPOINT_DIR,
                        help=f"the checkpoint folder to publish (default: {DEFAULT_CHECKPOINT_DIR})")
    parser.add_argument("--output-dir", type=Path, default=None,
                        help="also keep the built folders there, one subfolder per model (what `python app.py "
                        "--models FOLDER` reads)")
    args = parser.parse_args(argv)
    models = models_to_publish(CheckpointFolder(args.checkpoint_dir))
    longest = max(models, key=len)
    if not is_repo_id(args.prefix) or not is_repo_id(f"{args.prefix}-{longest}"):
        fail(f"{args.prefix!r} does not make repository ids: give OWNER/PREFIX, e.g. alice/norm-lab "
             f"(the longest id, {args.prefix}-{longest}, may have at most 96 characters)")
    api = None if args.dry_run else _api()
    with tempfile.TemporaryDirectory(prefix="publish-") as temporary:
        built = build(models, args.prefix, Path(temporary))
        if args.output_dir is not None:
            keep(built, args.output_dir)
        sizes = {(repo_id, name): (folder / name).stat().st_size for repo_id, folder in built.items() for name in FILES}
        if api is None:
            for (repo_id, name), size in sizes.items():
                print(f"{megabytes(size):>9}  {repo_id}/{name}")
            kept = f"; kept in {args.output_dir}" if args.output_dir is not None else ""
            print(f"{len(sizes)} files in {len(built)} repositories, {megabytes(sum(sizes.values()))} in all, "
                  f"would go to https://huggingface.co/{args.prefix}-*{kept}")
            return 0
        for repo_id, folder in built.items():
            size = sum(size for (repo, _), size in sizes.items() if repo == repo_id)
            print(f"uploading {len(FILES)} files ({megabytes(size)}) to https://huggingface.co/{repo_id}")
            try:
                url = upload(api, repo_id, folder, "model", f"Publish {repo_id} from the CIFAR-10 Normalization Lab",
                             allow_patterns=list(FILES))
            except HubUploadError as error:
                fail(str(error))
            print(f"done: {url}")
    return 0


def _api() -> Any:
    try:
        return hub_api()
    except HubUploadError as error:
        fail(str(error))


if __name__ == "__main__":
    sys.exit(main())
