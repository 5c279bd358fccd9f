"""``README.md`` of a model repository: the model card, generated from the checkpoint folder, never typed.

Every number comes from a file training or the lab wrote: the checkpoint's metadata
(``artifacts.weights``), ``results.json`` (``artifacts.results``: the seeds, the interval of
the mean, the differences between norms), ``lab/*.json`` (``artifacts.lab``, shown with the
lab's own tables) and ``photos.json`` (``artifacts.photos``). A file that is absent, or that
was written for another network, leaves its section saying so. The card's metadata is
huggingface_hub's ``ModelCardData``: library, license, task and tags (those every
``NormLabNet`` carries), the dataset, and the test accuracy in ``model-index`` form
(``EvalResult``), the Hub's way of stating evaluation results.

``python -m training.publish`` writes one card per model (``write_model_card``); the Hub, and
huggingface_hub's ``ModelCard.load``, read it.
"""

from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard

from artifacts.atomic import write_bytes
from artifacts.folder import CheckpointFolder
from artifacts.lab import EXPERIMENTS, read_lab_results
from artifacts.photos import read_photo_results
from artifacts.results import read_over_seeds, read_results
from artifacts.weights import read_metadata
from model import ARCHITECTURES, NORMS, build_model, network_fingerprint
from model.hub import NormLabNet

DATASET_ID = "uoft-cs/cifar10"  # CIFAR-10 on the Hub
DATASET_NAME = "CIFAR-10"
# The lab's findings a card reports for its norm (the cost measurement is about the machine, not the model).
LAB_FINDINGS = ("batch_size", "coupling", "robustness", "calibration")


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows])


def _pct(value: float) -> float:
    """A fraction as the card states it: percent, two decimals (as the project's README does)."""
    return round(100 * value, 2)


def _eval_results(metadata: dict[str, Any], over_seeds: dict[str, Any] | None) -> list[EvalResult]:
    common = {"task_type": "image-classification", "task_name": "Image Classification",
              "dataset_type": DATASET_ID, "dataset_name": DATASET_NAME, "dataset_split": "test",
              "metric_type": "accuracy"}
    results = [EvalResult(**common, metric_value=_pct(metadata["test_accuracy"]),
                          metric_name=f"Test accuracy (this checkpoint, seed {metadata['seed']})")]
    test = (over_seeds or {}).get("test_accuracy", {})
    if test.get("n", 0) > 1:
        args: dict[str, Any] = {"seeds": over_seeds["seeds"], "std": _pct(test["std"])}
        if test.get("low") is not None:
            args["interval_95"] = [_pct(test["low"]), _pct(test["high"])]
        results.append(EvalResult(**common, metric_value=_pct(test["mean"]), metric_args=args,
                                  metric_name=f"Test accuracy, mean of {test['n']} seeds"))
    return results


def _over_seeds(folder: CheckpointFolder, norm: str, metadata: dict[str, Any]) -> tuple[dict[str, Any] | None,
                                                                                           list[str], str]:
    """(this norm over seeds, the verdicts on the differences that involve it, a note) from results.json."""
    shipped = read_results(folder.results).get(norm)
    if shipped is None:
        return None, [], "No numbers over seeds: results.json is absent (`python -m training.summary` writes it)."
    if shipped.get("test_accuracy") != metadata["test_accuracy"] or shipped.get("seed") != metadata["seed"]:
        return None, [], ("No numbers over seeds: results.json describes another checkpoint than this one "
                          "(`python -m training.summary` rebuilds it).")
    over_seeds, differences = read_over_seeds(folder.results)
    verdicts = [difference["verdict"] for pair, difference in differences.items()
                if norm in pair.split("-") and "verdict" in difference]
    return over_seeds.get(norm), verdicts, ""


def _results_section(title: str, metadata: dict[str, Any], over_seeds: dict[str, Any] | None, verdicts: list[str],
                     note: str) -> str:
    lines = [f"- **This checkpoint** (seed {metadata['seed']}): test accuracy **{_pct(metadata['test_accuracy'])}%** "
             f"on the {DATASET_NAME} test set; train accuracy {_pct(metadata['train_accuracy'])}% (the running "
             "accuracy over the augmented batches of the last epoch)."]
    if "validation_accuracy" in metadata:
        lines.append(f"- Validation accuracy {_pct(metadata['validation_accuracy'])}% on the held-out validation "
                     f"split `{metadata.get('validation_split', '?')}` (not trained on).")
    test = (over_seeds or {}).get("test_accuracy", {})
    if test.get("n", 0) > 1:
        runs = ", ".join(f"{_pct(run['test_accuracy'])}% (seed {run['seed']})" for run in over_seeds.get("runs", []))
        interval = (f", 95% interval of the mean {_pct(test['low'])} to {_pct(test['high'])}%"
                    if test.get("low") is not None else "")
        lines.append(f"- **Over {test['n']} seeds** of the same recipe: {_pct(test['mean'])} ± {_pct(test['std'])}% "
                     f"(mean ± std{interval}): {runs}.")
    elif note:
        lines.append(f"- {note}")
    else:
        lines.append("- One seed only: no spread over seeds and no interval.")
    if verdicts:
        lines.append("- Against the other norms, the same network (Welch's t over the seeds, 95% intervals of the "
                     "difference in test accuracy): " + "; ".join(verdicts) + ".")
    return (f"## Results\n\n{title}, evaluated on the {DATASET_NAME} test set, no test-time augmentation.\n\n"
            + "\n".join(lines))


def _training_section(metadata: dict[str, Any], recipe: str, command: str) -> str:
    rows = [
        ("Recipe", f"`{metadata.get('recipe', 'ours')}`: {recipe}"),
        ("Epochs", metadata["epochs"]),
        ("Training images", f"{metadata['train_images']:,}" if "train_images" in metadata else "–"),
        ("Batch size", metadata.get("batch_size", "–")),
        ("Peak learning rate", metadata.get("lr", "–")),
        ("Weight decay", metadata.get("weight_decay", "–")),
        ("Label smoothing", metadata.get("label_smoothing", "–")),
        ("Crop padding (pixels)", metadata.get("crop_padding", "–")),
        ("Seed", metadata["seed"]),
        ("Input standardization", f"mean {metadata['mean']}, std {metadata['std']} (per channel, 0-1 scale)"),
    ]
    if "train_seconds" in metadata:
        rows.append(("Training time", f"{metadata['train_seconds'] / 60:.0f} minutes"))
    table = _table(["setting", "value"], [list(row) for row in rows])
    return (f"## Training\n\n{table}\n\nThe command that trains it again, from a checkout of the project with "
            f"CIFAR-10 in `PATH` (every setting spelled out):\n\n```bash\n{command}\n```")


def _photos_section(folder: CheckpointFolder, norm: str, classes: list[str]) -> str:
    photos = read_photo_results(folder.photos)
    measured = photos.get("models", {}).get(norm) if photos else None
    if not isinstance(measured, dict) or "total" not in measured:
        return ("## Real photos\n\nAccuracy on real photos was **not measured** for this model (no photos.json with "
                "its results beside the checkpoint).")
    per_class = measured.get("per_class", {})
    rows = [[name, f"{per_class[name]['correct']} / {per_class[name]['total']}"] for name in classes
            if name in per_class]
    command = f"\n\nMeasured with `{photos['command']}`." if "command" in photos else ""
    return (f"## Real photos\n\nOn {measured['total']} real photos (not from {DATASET_NAME}, reduced to 32 × 32 "
            f"pixels), **{measured['correct']} of {measured['total']}** were classified correctly "
            f"({_pct(measured['correct'] / measured['total']) if measured['total'] else 0}%).\n\n"
            f"{_table(['class', 'correct'], rows)}{command}")


def _lab_section(folder: CheckpointFolder, metadata: dict[str, Any], title: str) -> str:
    parts = []
    for name in LAB_FINDINGS:
        experiment = EXPERIMENTS[name]
        results = read_lab_results(folder.lab, name)
        setup = (results or {}).get("setup", {})
        if results is None:
            body = "Not measured for this network."
        elif setup.get("arch", metadata["arch"]) != metadata["arch"] or (
                "network" in setup and setup["network"] != network_fingerprint(build_model(metadata["arch"], "bn"))):
            body = "Measured on another network (or an earlier version of this one): not shown."
        else:
            try:
                text, headers, rows = experiment.table(results)
            except (KeyError, TypeError, ValueError, AttributeError):
                body = f"`lab/{name}.json` is not in the expected form."
            else:
                body = (f"{text}\n\n{_table(headers, rows)}\n\nMeasured by `python -m training.lab {name}`; "
                        f"this model is the {title} entry.")
        parts.append(f"### {experiment.title}\n\n{body}")
    return ("## What the lab measured\n\nThe project's lab measures what the three normalizations do to this "
            "network, beside each other:\n\n" + "\n\n".join(parts))


def model_card(folder: CheckpointFolder, norm: str, repo_id: str, recipe: str, command: str,
               siblings: list[str] | None = None) -> ModelCard:
    """The card of the ``norm`` model of ``folder``, published as ``repo_id``.

    ``recipe``: the training recipe in words; ``command``: the command that trains the
    model again (both from the training settings, ``training.publish``); ``siblings``: the
    repositories of the same network with the other norms. Raises ``CheckpointError`` when
    the checkpoint cannot be read.
    """
    metadata = read_metadata(folder.weights(norm))
    title, arch = NORMS[norm].title, metadata["arch"]
    groups = metadata.get("gn_groups", ARCHITECTURES[arch].gn_groups)
    described = f"{title} ({groups} groups)" if norm == "gn" else title
    over_seeds, verdicts, note = _over_seeds(folder, norm, metadata)
    classes = list(metadata["classes"])
    data = NormLabNet.card_data()
    data.datasets = [DATASET_ID]
    data.metrics = ["accuracy"]
    data.tags = sorted({*(data.tags or []), title.lower(), f"{arch}-network"})
    data.model_name = repo_id.split("/")[-1]
    data.eval_results = _eval_results(metadata, over_seeds)
    related = ""
    if siblings:
        related = "\n\nThe same network with the other norms: " + ", ".join(
            f"[{sibling}](https://huggingface.co/{sibling})" for sibling in siblings) + "."
    body = f"""# {repo_id.split("/")[-1]}: {described} on {DATASET_NAME}

A small convolutional network for {DATASET_NAME}'s ten classes, trained with **{described}**: the
`{arch}` network ({ARCHITECTURES[arch].description}), **{metadata['parameters']:,} parameters**,
{metadata['epochs']} epochs. It comes from the CIFAR-10 Normalization Lab, which trains one network with
BatchNorm, GroupNorm and LayerNorm and compares them.{related}

## Use it

```python
from model.hub import NormLabNet  # the CIFAR-10 Normalization Lab's code
model = NormLabNet.from_pretrained("{repo_id}")
probabilities = model.predict(pixels)  # (32, 32, 3) uint8 RGB -> (1, {len(classes)}), classes in model.classes
```

`NormLabNet` is the project's `model/hub.py` (run it from a checkout of the project after `pip install -r
requirements.txt`); `config.json` rebuilds the network (architecture, norm, group count) and carries the
checkpoint's metadata. `model.network` is a plain `torch.nn.Module` in eval mode that takes images standardized
with the mean and std below.

{_results_section(described, metadata, over_seeds, verdicts, note)}

{_photos_section(folder, norm, classes)}

## Limits

- **32 × 32 input.** The network sees 32 × 32 RGB pixels; a larger photo has to be reduced to that (cropped,
  padded or stretched first), and most of its detail is lost.
- **{DATASET_NAME}'s ten classes only**: {", ".join(classes)}.
  Anything else still gets one of them, often with high confidence.
- Trained on {DATASET_NAME}'s small, low-resolution photos; real photos look different (see "Real photos"
  above).

{_training_section(metadata, recipe, command)}

{_lab_section(folder, metadata, title)}
"""
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")


def write_model_card(path: Path, card: ModelCard) -> None:
    write_bytes(path, str(card).encode())

