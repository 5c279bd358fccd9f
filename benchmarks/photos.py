"""The models on a folder of real photos, through exactly what the app serves, per norm and per class.

    python benchmarks/photos.py FOLDER                                   # print the table
    python benchmarks/photos.py FOLDER --output checkpoints/photos.json  # and write photos.json
    python benchmarks/photos.py FOLDER --views single flip crops         # compare multi-view inference
    python benchmarks/photos.py FOLDER --resampling box                  # another filter for scaling down
    python benchmarks/photos.py FOLDER --trend                           # photos against test accuracy, every model

FOLDER holds one ``<class>/`` subfolder of photos per class, named as the models' classes are
(CIFAR-10's: airplane, automobile, ...). Each photo goes through the app's own path: the upload
is decoded and brought to 32 x 32 by ``webapp.preprocess`` (``--fit``, as the Classify tab's
"How to make it 32 x 32"), then the loaded models of ``webapp.inference`` classify it, over the
views ``--views`` names (``webapp.preprocess.VIEW_MODES``; the first is the one written to
``--output``, the others are kept beside it). Folders that are not a class, and files that are
not images the app can read, are reported and skipped.

``--trend`` asks whether a better CIFAR-10 model is a better model of photos: it measures every model in
the checkpoint folder and the folders under it (the other seeds, the reference network, the grid's
cells), each against its own test accuracy, and fits a line through them.
"""

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from artifacts.folder import default_checkpoint_dir  # noqa: E402
from artifacts.photos import write_photo_results  # noqa: E402
from model import CLASSES, NORMS, norm_short  # noqa: E402
from training.statistics import line_fit  # noqa: E402
from webapp.inference import ModelBank, load_bank  # noqa: E402
from webapp.preprocess import (  # noqa: E402
    DEFAULT_RESAMPLING,
    FIT_MODES,
    RESAMPLING,
    VIEW_LABELS,
    VIEW_MODES,
    ImageInputError,
    model_views,
    prepare,
)

PROGRAM = "python benchmarks/photos.py"


@dataclass(frozen=True)
class Photo:
    path: Path
    label: int  # index into the models' classes


def find_photos(folder: Path, classes: tuple[str, ...]) -> tuple[list[Photo], list[str]]:
    """Every file in a ``<class>/`` subfolder of ``folder``, and what was skipped (one line each).

    Hidden files and folders are ignored; a folder whose name is not a class, and a file
    directly in ``folder``, are skipped and reported. Which files are images is found out
    when they are read.
    """
    photos, skipped = [], []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            skipped.append(f"{entry.name}: a file outside any class folder (put photos in FOLDER/<class>/)")
        elif entry.name not in classes:
            skipped.append(f"{entry.name}/: not a class the models know; name the folder one of "
                           f"{', '.join(classes)}")
        else:
            label = classes.index(entry.name)
            photos += [Photo(path, label) for path in sorted(entry.rglob("*"))
                       if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts)]
    return photos, skipped


def empty_counts(classes: list[str]) -> dict[str, Any]:
    return {"correct": 0, "total": 0, "per_class": {name: {"correct": 0, "total": 0} for name in classes}}


@dataclass
class Measurement:
    # {view: {norm: {"correct", "total", "accuracy", "per_class": {class: {"correct", "total"}}}}}
    counts: dict[str, Any]
    # {view: {photo path: {norm: (10,) probabilities}}}: what the models answered on each photo
    answers: dict[str, dict[Path, dict[str, np.ndarray]]]
    unreadable: list[str]  # one line per file that is not an image the app can read


def measure(photos: list[Photo], bank: ModelBank, fit: str, views: list[str],
            resampling: str = DEFAULT_RESAMPLING) -> Measurement:
    """Each view mode's counts per norm and class, each photo's answers, and what could not be read."""
    classes = [bank.classes[label] for label in sorted({photo.label for photo in photos})]
    counts = {view: {norm: empty_counts(classes) for norm in bank.norms} for view in views}
    answers: dict[str, dict[Path, dict[str, np.ndarray]]] = {view: {} for view in views}
    unreadable = []
    for photo in photos:
        try:
            pixels, upload = prepare(photo.path, fit, resampling)
        except ImageInputError as error:
            unreadable.append(str(error))
            continue
        name = bank.classes[photo.label]
        for view in views:
            prediction = bank.predict(model_views(upload.picture, pixels, fit, view, resampling))
            answers[view][photo.path] = prediction.probabilities
            for norm in bank.norms:
                right = int(prediction.top(norm) == photo.label)
                for tally in (counts[view][norm], counts[view][norm]["per_class"][name]):
                    tally["correct"] += right
                    tally["total"] += 1
    for per_norm in counts.values():
        for tally in per_norm.values():
            tally["accuracy"] = tally["correct"] / tally["total"] if tally["total"] else 0.0
            # A class whose every photo was unreadable has nothing to report.
            tally["per_class"] = {name: c for name, c in tally["per_class"].items() if c["total"]}
    return Measurement(counts, answers, unreadable)


def paired(first: dict[Path, dict[str, np.ndarray]], other: dict[Path, dict[str, np.ndarray]],
           photos: list[Photo], norm: str) -> tuple[int, int, float]:
    """The photos ``norm``'s answers in ``other`` get right and those in ``first`` do not, the reverse, and
    McNemar's exact two-sided p-value: the chance of a split at least this uneven if neither were better
    (each such photo then a fair coin). Over the same photos, this says whether a view mode or another set
    of models does better, rather than the two totals. Answers are ``Measurement.answers[view]``."""
    label = {photo.path: photo.label for photo in photos}
    only_other = only_first = 0
    for path, answer in first.items():
        right_first = int(answer[norm].argmax()) == label[path]
        right_other = int(other[path][norm].argmax()) == label[path]
        only_other += right_other and not right_first
        only_first += right_first and not right_other
    split = only_other + only_first
    p_value = stats.binomtest(only_other, split, 0.5).pvalue if split else 1.0
    return only_other, only_first, float(p_value)


def print_paired(newer: str, older: str, first: dict[Path, dict[str, np.ndarray]],
                 other: dict[Path, dict[str, np.ndarray]], photos: list[Photo], norms: list[str]) -> None:
    """``paired`` for each norm, ``other``'s answers (called ``newer``) against ``first``'s (``older``)."""
    print(f"\n{newer} against {older}, photo by photo (right only with {newer} / right only with {older}; "
          "McNemar's exact p):")
    for norm in norms:
        only_other, only_first, p_value = paired(first, other, photos, norm)
        print(f"  {norm_short(norm)}: {only_other} / {only_first}, p = {p_value:.3f}")


def table(counts: dict[str, Any], classes: list[str]) -> str:
    """One row per class and a last row for all photos; one column per norm: correct / total (percent)."""
    norms = list(counts)

    def cell(tally: dict[str, int]) -> str:
        share = tally["correct"] / tally["total"] if tally["total"] else 0.0
        return f"{tally['correct']:>3} / {tally['total']:<3} {share:6.1%}"

    rows = [f"{'class':12s}" + "".join(f"  {norm_short(norm):>17s}" for norm in norms)]
    for name in classes:
        if any(name in counts[norm]["per_class"] for norm in norms):
            rows.append(f"{name:12s}" + "".join(
                f"  {cell(counts[norm]['per_class'].get(name, {'correct': 0, 'total': 0})):>17s}" for norm in norms))
    rows.append(f"{'all':12s}" + "".join(f"  {cell(counts[norm]):>17s}" for norm in norms))
    return "\n".join(rows)


@dataclass(frozen=True)
class ModelPoint:
    folder: str  # the model's folder, relative to the checkpoint folder ("." for the checkpoint folder itself)
    norm: str
    test_accuracy: float
    correct: int  # photos right
    total: int


def model_folders(root: Path) -> list[Path]:
    """``root`` and every folder under it that holds a model (``<norm>.safetensors``), ``root`` first."""
    names = {f"{norm}.safetensors" for norm in NORMS}
    found = {path.parent for path in root.rglob("*.safetensors") if path.name in names}
    return sorted(found, key=lambda folder: (folder != root, str(folder.relative_to(root))))


def trend_points(photos: list[Photo], root: Path, fit: str, view: str,
                 resampling: str = DEFAULT_RESAMPLING) -> tuple[list[ModelPoint], list[str]]:
    """Each model under ``root`` with its test accuracy and the photos it gets right, and what was left out
    (one line each: a model that cannot be loaded, one without a test accuracy, a file that is not an image)."""
    points, left_out = [], []
    for folder in model_folders(root):
        name = folder.relative_to(root).as_posix()
        bank = load_bank(folder)
        left_out += [f"{name}/{norm}: {problem}" for norm, problem in bank.problems.items()
                     if (folder / f"{norm}.safetensors").exists()]
        if not bank.models:
            continue
        measured = measure(photos, bank, fit, [view], resampling)
        left_out += [line for line in measured.unreadable if line not in left_out]
        for norm in bank.norms:
            accuracy = bank.models[norm].metadata.get("test_accuracy")
            if not isinstance(accuracy, (int, float)):
                left_out.append(f"{name}/{norm}: no test accuracy (a model trained for the validation split)")
                continue
            tally = measured.counts[view][norm]
            points.append(ModelPoint(name, norm, float(accuracy), tally["correct"], tally["total"]))
    return points, left_out


def print_trend(points: list[ModelPoint], target: float) -> bool:
    """The models, then the line of photo accuracy on test accuracy and where it reaches ``target``; False (with
    the reason on stderr) when no line can be fitted."""
    print(f"\n{'folder':32s}  {'norm':4s}  {'test':>7s}  photos right")
    for point in points:
        print(f"{point.folder:32s}  {norm_short(point.norm):4s}  {point.test_accuracy:7.2%}  "
              f"{point.correct:>3} / {point.total}")
    try:
        line = line_fit([100 * p.test_accuracy for p in points], [100 * p.correct / p.total for p in points])
    except ValueError as error:
        print(f"error: no line through {len(points)} models: {error}", file=sys.stderr)
        return False
    print(f"\nA line through the {line.n} models: photo accuracy changes by {line.slope:+.2f} points per point of "
          f"test accuracy (95% interval {line.low:+.2f} to {line.high:+.2f}; r = {line.r:.2f}; the models share "
          "photos and recipes, so the interval is narrower than it should be).")

    def where(reach: float | None) -> str:
        if reach is None:
            return "never (the slope is not above zero)"
        return f"{reach:.1f}%" + (" (beyond 100%)" if reach > 100 else "")

    print(f"It reaches {target:.0%} of the photos at a test accuracy of {where(line.reaches(100 * target))}; "
          f"with the interval's steepest slope, at {where(line.reaches(100 * target, line.high))}.")
    return True


def trend(args: argparse.Namespace, root: Path) -> int:
    """``--trend``: every model under ``root``, the checkpoint folder, and the line through them."""
    photos, skipped = find_photos(args.folder, CLASSES)
    for line in skipped:
        print(f"skipped {line}", file=sys.stderr)
    points, left_out = trend_points(photos, root, args.fit, args.views[0], args.resampling)
    for line in left_out:
        print(f"left out {line}", file=sys.stderr)
    if not points or not points[0].total:
        print(f"error: no model with a test accuracy under {root} got a photo from {args.folder} to classify; "
              "see the lines above", file=sys.stderr)
        return 2
    print(f"\n{points[0].total} photos, fit {args.fit}, {args.resampling} resampling, views {args.views[0]}: "
          f"every model under {root}")
    return 0 if print_trend(points, args.target) else 2


def command(args: argparse.Namespace) -> str:
    """The command that measured the numbers, every setting spelled out (the resampling where it is not the app's)
    and folders as PATH."""
    words = [PROGRAM, "PATH"]
    if args.checkpoint_dir is not None:
        words += ["--checkpoint-dir", "PATH"]
    words += ["--fit", args.fit, "--views", *args.views]
    if args.resampling != DEFAULT_RESAMPLING:
        words += ["--resampling", args.resampling]
    return " ".join(words)


def results_file(args: argparse.Namespace, counts: dict[str, Any], classes: list[str]) -> dict[str, Any]:
    """photos.json (``artifacts.photos``): the first view mode's numbers, the others under ``other_views``."""
    first, *others = args.views
    photos = max((tally["total"] for tally in counts[first].values()), default=0)
    results: dict[str, Any] = {"command": command(args), "photos": photos, "fit": args.fit,
                               "resampling": args.resampling, "views": first, "classes": classes,
                               "models": counts[first]}
    if others:
        results["other_views"] = {view: counts[view] for view in others}
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="a folder of <class>/ subfolders of photos")
    parser.add_argument("--checkpoint-dir", type=Path, default=None,
                        help="the models to measure (default: $CHECKPOINT_DIR, else checkpoints)")
    parser.add_argument("--output", type=Path, default=None,
                        help="write the results there (photos.json format, see artifacts/photos.py)")
    parser.add_argument("--fit", choices=list(FIT_MODES), default="crop",
                        help="how a photo is made 32 x 32, as in the app (default crop)")
    parser.add_argument("--views", nargs="+", choices=list(VIEW_MODES), default=["single"],
                        help="the view modes to measure, as in the app; the first is written to --output "
                        "(default single)")
    parser.add_argument("--resampling", choices=list(RESAMPLING), default=DEFAULT_RESAMPLING,
                        help=f"the filter of the last step in scaling a photo down (default {DEFAULT_RESAMPLING}, "
                        "as the app serves); another measures what the app would get with it")
    parser.add_argument("--against", type=Path, default=None, metavar="CHECKPOINT_DIR",
                        help="also compare these models photo by photo with the models in that folder (say, "
                        "those shipped before), on the first view mode")
    parser.add_argument("--trend", action="store_true",
                        help="measure every model in the checkpoint folder and the folders under it against its "
                        "test accuracy, on the first view mode, and fit a line")
    parser.add_argument("--target", type=float, default=0.75,
                        help="with --trend: the photo accuracy to find on the line (default 0.75)")
    args = parser.parse_args(argv)
    args.views = list(dict.fromkeys(args.views))
    if args.trend and (args.output is not None or args.against is not None):
        parser.error("--trend measures every model on its own; leave out --output and --against")
    if not 0 < args.target <= 1:
        parser.error(f"--target is a share of the photos, above 0 and at most 1 (got {args.target})")
    if not args.folder.is_dir():
        print(f"error: {args.folder} is not a folder; give a folder of <class>/ subfolders of photos",
              file=sys.stderr)
        return 2
    checkpoint_dir = args.checkpoint_dir if args.checkpoint_dir is not None else default_checkpoint_dir()
    if args.trend:
        return trend(args, checkpoint_dir)
    bank = load_bank(checkpoint_dir)
    for norm, problem in bank.problems.items():
        print(f"warning: {norm_short(norm)} left out: {problem}", file=sys.stderr)
    if not bank.models:
        print("error: no model could be loaded; see the warnings above", file=sys.stderr)
        return 2
    photos, skipped = find_photos(args.folder, bank.classes)
    for line in skipped:
        print(f"skipped {line}", file=sys.stderr)
    if not photos:
        print(f"error: no photos in {args.folder}: put them in subfolders named after the classes "
              f"({', '.join(bank.classes)})", file=sys.stderr)
        return 2
    measured = measure(photos, bank, args.fit, args.views, args.resampling)
    counts = measured.counts
    for line in measured.unreadable:
        print(f"skipped {line}", file=sys.stderr)
    classes = [name for name in bank.classes if any(name in tally["per_class"]
                                                     for tally in counts[args.views[0]].values())]
    if not classes:
        print(f"error: none of the {len(photos)} files in {args.folder} is an image the app can read",
              file=sys.stderr)
        return 2
    for view in args.views:
        total = max(tally["total"] for tally in counts[view].values())
        print(f"\n{total} photos, fit {args.fit}, {args.resampling} resampling, views {view} "
              f"({VIEW_LABELS[view].lower()}): "
              "correct / total per class")
        print(table(counts[view], classes))
    first = args.views[0]
    for view in args.views[1:]:
        print_paired(view, first, measured.answers[first], measured.answers[view], photos, bank.norms)
    if args.against is not None:
        other = load_bank(args.against)
        for norm, problem in other.problems.items():
            print(f"warning: {norm_short(norm)} of {args.against} left out: {problem}", file=sys.stderr)
        norms = [norm for norm in bank.norms if norm in other.models]
        if not norms:
            print(f"error: no model in {args.against} to compare with; see the warnings above", file=sys.stderr)
            return 2
        theirs = measure(photos, other, args.fit, [first], args.resampling).answers[first]
        print_paired("these models", f"those in {args.against}", theirs, measured.answers[first], photos, norms)
    if args.output is not None:
        write_photo_results(args.output, results_file(args, counts, classes))
        print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

