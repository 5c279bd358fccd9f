"""Upload the app to a Hugging Face Space: exactly the files it reads at run time, nothing else.

    hf auth login                                      # once (or set HF_TOKEN)
    python -m webapp.deploy OWNER/SPACE                # create the Space if needed, upload
    python -m webapp.deploy OWNER/SPACE --dry-run      # list the files and their total size; no network

The README's front matter makes the upload a Gradio Space. The Hub refuses binary files
(PNG, safetensors, npz) pushed with plain git; huggingface_hub's ``upload_folder`` stores them
the way the Hub wants, and ``.gitattributes`` marks them for Git LFS as Space templates do.
Tests, benchmarks, the training code, runs/, data/, logs/, the reference network's weights and
plots, and the histories and figures the app does not show stay out.
"""

import argparse
import os
import sys
from pathlib import Path
from typing import NoReturn

from model.hub import HubUploadError, hub_api, is_repo_id, megabytes, upload

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = "checkpoints"  # the Space runs app.py with its default checkpoint folder
# The Space's configuration (front matter, dependencies, LFS rules), the app and the packages it imports.
CODE = ["README.md", "requirements.txt", ".gitattributes", "app.py", "webapp/*.py", "model/*.py",
        "artifacts/*.py", "probes/*.py"]


def checkpoint_files() -> tuple[list[str], list[str]]:
    """(needed, optional): what the app reads from the checkpoint folder, relative to the repository root.

    Named by ``CheckpointFolder``, the one place that knows the folder's file names: the models,
    the Mistakes tab's images (also the Lab's companions), the Training tab's results and figures,
    the examples, and the Lab tab's measurements with their plots. The reference network's
    results (with our recipe, and with the published one) are optional: the Training tab shows
    their columns only when the files are there.
    """
    from artifacts.folder import CheckpointFolder
    from artifacts.lab import EXPERIMENTS
    from model import ARCHITECTURES, NORMS

    folder = CheckpointFolder(Path(CHECKPOINTS))
    needed = [folder.weights(norm) for norm in NORMS] + [folder.confusion(norm) for norm in NORMS]
    needed += [folder.mistakes, folder.results, folder.curves, folder.examples / "*.png"]
    needed += [path for name in EXPERIMENTS for path in (folder.lab.results(name), folder.lab.figure(name))]
    reproduced = folder.grid_cell("reference", ARCHITECTURES["reference"].published_recipe).results
    return [path.as_posix() for path in needed], [folder.reference.results.as_posix(), reproduced.as_posix()]


def space_patterns() -> list[str]:
    """Everything the Space needs, as upload_folder patterns relative to the repository root.

    ``*`` also matches ``/``, so the code patterns name their files' type.
    """
    needed, optional = checkpoint_files()
    return [*CODE, *needed, *optional]


def fail(message: str) -> NoReturn:
    raise SystemExit(f"python -m webapp.deploy: error: {message}")


def _candidates(root: Path, patterns: list[str]) -> list[str]:
    """Every file upload_folder could consider, relative to ``root``; folders no pattern names are skipped."""
    tops = {pattern.split("/")[0] for pattern in patterns if "/" in pattern}
    found = [entry.name for entry in root.iterdir() if entry.is_file()]
    for top in sorted(tops):
        for folder, _, files in os.walk(root / top):
            found += [(Path(folder) / name).relative_to(root).as_posix() for name in files]
    return found


def space_files(root: Path = ROOT) -> list[str]:
    """The files of ``root`` that ``upload_folder(allow_patterns=space_patterns())`` uploads, sorted."""
    from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, filter_repo_objects

    patterns = space_patterns()
    return sorted(filter_repo_objects(_candidates(root, patterns), allow_patterns=patterns,
                                      ignore_patterns=DEFAULT_IGNORE_PATTERNS))


def missing(files: list[str]) -> list[str]:
    """The needed patterns that match none of ``files``."""
    from huggingface_hub.utils import filter_repo_objects

    needed = [*CODE, *checkpoint_files()[0]]
    return [pattern for pattern in needed if not any(filter_repo_objects(files, allow_patterns=[pattern]))]


def total_bytes(root: Path, files: list[str]) -> int:
    return sum((root / name).stat().st_size for name in files)


def check_space_id(space: str) -> None:
    if not is_repo_id(space):
        fail(f"{space!r} is not a Space id: give it as OWNER/SPACE, e.g. alice/cifar10-normalization-lab")


def deploy(space: str, root: Path, files: list[str], size: int) -> None:
    try:
        api = hub_api()
        print(f"uploading {len(files)} files ({megabytes(size)}) to https://huggingface.co/spaces/{space}")
        url = upload(api, space, root, "space", "Deploy the CIFAR-10 Normalization Lab",
                     allow_patterns=space_patterns(), space_sdk="gradio")
    except HubUploadError as error:
        fail(str(error))
    print(f"done: {url}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m webapp.deploy", description=__doc__.split("\n\n")[0])
    parser.add_argument("space", metavar="OWNER/SPACE", help="the Space to create or update, e.g. alice/norm-lab")
    parser.add_argument("--dry-run", action="store_true", help="list what would be uploaded and its size; no network")
    args = parser.parse_args(argv)
    check_space_id(args.space)
    files = space_files(ROOT)
    absent = missing(files)
    if absent:
        fail(f"nothing matches {', '.join(absent)}: run `python -m training` (and `python -m training.lab all`) first")
    size = total_bytes(ROOT, files)
    if args.dry_run:
        for name in files:
            print(f"{megabytes((ROOT / name).stat().st_size):>9}  {name}")
        print(f"{len(files)} files, {megabytes(size)} in all, would go to https://huggingface.co/spaces/{args.space}")
        return 0
    deploy(args.space, ROOT, files, size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
