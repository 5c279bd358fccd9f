"""The page: five tabs (Classify, Mistakes, Training, Lab, Inside the norms), one function each, and their wiring.

Handlers return ``{output name: value}``; ``named`` turns that into the
``{component: value}`` Gradio accepts, so no list of outputs has to match a tuple's order.
"""

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from gradio.data_classes import GradioModel, GradioRootModel
from PIL import Image

from artifacts.lab import EXPERIMENTS, markdown_table
from artifacts.mistakes import MistakesError, MistakeSet, load_mistakes
from model import NORMS, norm_title
from webapp.callbacks import CAM_NOTE, CAMS, GRADCAM, LABELS, NO_CLASS, PREVIEW, TOP_CLASS, Handlers
from webapp.inference import ModelBank, load_bank
from webapp.inside import INSIDE_OUTPUTS, PANELS, InsideView
from webapp.lab import COMPANION_SIZE, UPLOADED, LabDemo, corruption_choices, read_lab, section_markdown
from webapp.mistakes import ANY, agreement_choices
from webapp.output_files import png_file, sweep_interval
from webapp.preprocess import FIT_MODES, VIEW_LABELS
from webapp.sessions import use_lean_sessions
from webapp.training_report import (
    differences_markdown,
    explanation,
    find_figures,
    reference_note,
    results_table,
)

TITLE = "CIFAR-10 Normalization Lab"
INTRO = (
    "One small convolutional network, trained three times on CIFAR-10: with **BatchNorm**, **GroupNorm** and "
    "**LayerNorm**. Upload a photo (or click an example) to see what each version predicts and where it looks. "
    "The models know only CIFAR-10's ten classes and see your photo at 32 × 32 pixels."
)

CSS = """
.verdict { padding: 10px 14px; border-radius: 10px; font-size: 1.1em; line-height: 1.5; }
.verdict.agree { background: rgba(0, 158, 115, 0.12); border: 1px solid rgba(0, 158, 115, 0.55); }
.verdict.disagree { background: rgba(230, 159, 0, 0.16); border: 1px solid rgba(230, 159, 0, 0.7); }
.verdict.single { background: rgba(0, 114, 178, 0.1); border: 1px solid rgba(0, 114, 178, 0.5); }
.verdict-detail { display: block; font-size: 0.85em; opacity: 0.85; }
/* 32 x 32 images are sent as they are and blown up here, with hard pixel edges. */
.pixelated img { image-rendering: pixelated; }
#input-image .image-frame, #input-image .image-frame img,
.pixelated .image-frame, .pixelated .image-frame img { width: 100%; height: 100%; object-fit: contain; }
/* Mistake captions go under the tile instead of over it: the images are only 32 pixels to begin with. */
.mistake-gallery .thumbnail-item { aspect-ratio: auto !important; height: auto !important; display: flex;
                                   flex-direction: column; }
.mistake-gallery .thumbnail-lg > img { aspect-ratio: 1 / 1; height: auto !important; }
.mistake-gallery .caption-label { position: static !important; max-width: 100% !important; border: none !important;
                                  border-radius: 0 !important; white-space: normal !important; text-align: center;
                                  font-size: 11.5px !important; line-height: 1.25; padding: 3px 4px !important; }
/* The Inside tab's feature maps fill their column's width, so the captions above them line up. */
.inside-maps .image-frame, .inside-maps .image-frame img { width: 100%; height: auto !important; }
.banner { padding: 8px 12px; border-radius: 8px; background: rgba(213, 94, 0, 0.12);
          border: 1px solid rgba(213, 94, 0, 0.6); }
""" + f"""
.pixelated img.{PREVIEW} {{ display: block; width: 160px; height: 160px; }}
.pixelated img.{GRADCAM} {{ display: block; width: 100%; max-width: 240px; height: auto; margin: 0 auto; }}
"""


def named(handler: Callable[..., dict[str, Any]], outputs: dict[str, Any]) -> Callable[..., dict[Any, Any]]:
    """``handler`` returning ``{component: value}`` for the ``{name: value}`` it returns."""

    @functools.wraps(handler)  # Gradio reads the signature (say, a gr.SelectData argument) through this
    def by_component(*args: Any) -> dict[Any, Any]:
        return {outputs[name]: value for name, value in handler(*args).items()}

    return by_component


def prepared(handler: Callable[..., dict[str, Any]], outputs: dict[str, Any]) -> Callable[..., dict[Any, Any]]:
    """``named``, with each value already in the form the page receives, for an event with ``postprocess=False``.

    Gradio runs each output's ``postprocess`` in a worker thread of its own: one hand-off between
    threads per output (eight for a classification; gr.State values need none), each waking the
    event loop. Here the handler's thread runs the same functions on the same values, so the event
    costs one hand-off. The handler returns values, not ``gr.update``s (Gradio would send an
    update's value unprocessed).
    """
    by_component = named(handler, outputs)

    @functools.wraps(handler)
    def ready(*args: Any) -> dict[Any, Any]:
        return {component: _served(component, value) for component, value in by_component(*args).items()}

    return ready


def _served(component: Any, value: Any) -> Any:
    """``value`` as Gradio serves it from ``component`` (a gr.State's value stays on the server as it is)."""
    if isinstance(component, gr.State):
        return value
    served = component.postprocess(value)
    return served.model_dump() if isinstance(served, GradioModel | GradioRootModel) else served


def _example_pixels(paths: list[Path]) -> dict[str, np.ndarray]:
    """The shipped 32 x 32 example images, by class name; unreadable ones are skipped."""
    pixels = {}
    for path in paths:
        try:
            with Image.open(path) as image:
                array = np.array(image.convert("RGB"))
        except OSError:
            continue
        if array.shape == (32, 32, 3):
            pixels[path.stem] = array
    return pixels


def _banner(bank: ModelBank, mistakes_problem: str | None) -> str:
    lines = [f"⚠ **{NORMS[norm].title} is unavailable:** {problem}" for norm, problem in bank.problems.items()]
    if mistakes_problem:
        lines.append(f"⚠ **The Mistakes tab is empty:** {mistakes_problem}")
    return "\n\n".join(lines)


def _label_title(bank: ModelBank, norm: str) -> str:
    loaded = bank.models.get(norm)
    if loaded is None:
        return f"{NORMS[norm].title}: unavailable"
    return f"{NORMS[norm].title} · test {loaded.metadata['test_accuracy']:.1%}"


@dataclass
class App:
    """What the tabs share: the loaded models, the mistakes file and the handlers."""

    bank: ModelBank
    mistakes: MistakeSet | None
    mistakes_problem: str | None
    handlers: Handlers
    lab_demo: LabDemo
    inside: InsideView


def load_app(checkpoint_dir: Path | str | None, models: str | None = None) -> App:
    bank = load_bank(checkpoint_dir, models)
    try:
        mistakes: MistakeSet | None = load_mistakes(bank.folder.mistakes)
        mistakes_problem = None
    except MistakesError as error:
        mistakes, mistakes_problem = None, str(error)
    examples = _example_pixels(bank.folder.example_files())
    lab_demo = LabDemo(bank, examples, mistakes.images if mistakes is not None else None)
    return App(bank, mistakes, mistakes_problem, Handlers(bank, mistakes), lab_demo, InsideView(bank, lab_demo.pool))


def classify_tab(app: App) -> gr.State:
    """Upload or pick an image, see the three models' answers and Grad-CAM; returns the image's pixels state."""
    handlers, bank = app.handlers, app.bank
    examples = bank.folder.example_files()
    with gr.Tab("Classify"):
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=300):
                image = gr.Image(
                    label="Your image", type="filepath", image_mode=None, height=280,
                    sources=["upload", "clipboard", "webcam"], elem_id="input-image",
                )
                if examples:
                    gr.Examples(
                        [[str(path)] for path in examples], inputs=[image], cache_examples=False,
                        label="Or click a CIFAR-10 test image (one per class)", examples_per_page=10,
                    )
                fit = gr.Radio(
                    [(label, key) for key, label in FIT_MODES.items()], value="crop",
                    label="How to make it 32 × 32",
                )
                views = gr.Radio(
                    [(label, key) for key, label in VIEW_LABELS.items()], value="single",
                    label="Views averaged (mirrored and shifted copies of the input; the test accuracies use one)",
                )
                with gr.Row(equal_height=False):
                    # HTML holding the image itself (so do the Grad-CAM maps): a picture of a few KB
                    # needs no file of its own, written, checked by Gradio and fetched.
                    preview = gr.HTML(label="What the models see", show_label=True, container=True,
                                      elem_classes="pixelated", min_width=160, min_height=160, scale=0)
                    input_note = gr.Markdown("The 32 × 32 pixels the models receive appear here.")
            with gr.Column(scale=3, min_width=360):
                verdict = gr.HTML()
                with gr.Row():
                    labels = {
                        LABELS[norm]: gr.Label(label=_label_title(bank, norm), color=NORMS[norm].colour,
                                               min_width=150)
                        for norm in NORMS
                    }
                top_k = gr.Slider(1, 10, value=3, step=1, label="Classes shown per model")
                chart = gr.HTML(label="All ten classes")
                timing = gr.Markdown()
        with gr.Accordion("Where did each model look? (Grad-CAM)", open=True):
            gr.Markdown(
                "Grad-CAM weighs the feature maps of one block by how much they raise the class score; red "
                "marks the parts of the image that pushed the model towards that class. Early blocks show "
                "fine detail, the last block shows what the decision rests on (at coarse resolution)."
            )
            with gr.Row():
                layer = gr.Dropdown(
                    handlers.layer_choices(), value=handlers.layers[-1].index if handlers.layers else None,
                    label="Layer", scale=2,
                )
                target = gr.Dropdown(
                    [("each model's top class", TOP_CLASS), *[(name, i) for i, name in enumerate(bank.classes)]],
                    value=TOP_CLASS, label="Explain the class", scale=1,
                )
                opacity = gr.Slider(0, 1, value=0.5, step=0.05, label="Heat-map opacity", scale=1)
            with gr.Row():
                cams = {
                    CAMS[norm]: gr.HTML(label=f"{NORMS[norm].title}", show_label=True, container=True,
                                        elem_classes="pixelated", min_height=240)
                    for norm in NORMS
                }
            cam_note = gr.Markdown()
        pixels_state, probabilities_state = gr.State(), gr.State()

    classified = {"preview": preview, **labels, "chart": chart, "verdict": verdict, "input_note": input_note,
                  "timing": timing, "pixels": pixels_state, "probabilities": probabilities_state}
    cams[CAM_NOTE] = cam_note
    cleared = {**classified, **cams}
    explain_inputs = [pixels_state, layer, opacity, target]
    # Their values come prepared (postprocess=False): these are the events every visitor and API call runs.
    classify, explain = prepared(handlers.classify, classified), prepared(handlers.explain, cams)
    # preprocess=False: gr.Image would decode the upload with Pillow before the handler runs, so a
    # non-image or a decompression bomb would fail there with a generic error; the handler gets the
    # uploaded file (already checked by Gradio to be an upload) and says exactly what is wrong.
    # Clearing first means a rejected upload never sits next to the previous image's results.
    image.change(
        named(handlers.clear, cleared), None, list(cleared.values()), queue=False, show_progress="hidden",
        api_visibility="private",
    ).then(
        classify, [image, fit, top_k, views], list(classified.values()), api_name="classify", preprocess=False,
        postprocess=False,
        api_description="Classify an image with the three models (views: single, flip or crops, averaged).",
    ).success(explain, explain_inputs, list(cams.values()), api_visibility="private", show_progress="hidden",
              postprocess=False)
    for control in (fit, views):
        control.change(
            classify, [image, fit, top_k, views], list(classified.values()), api_visibility="private",
            preprocess=False, postprocess=False,
        ).success(explain, explain_inputs, list(cams.values()), api_visibility="private", show_progress="hidden",
                  postprocess=False)
    top_k.change(prepared(handlers.labels, labels), [probabilities_state, top_k], list(labels.values()),
                 api_visibility="private", show_progress="hidden", postprocess=False)
    # Public as /gradcam: an API client calls it after /classify, whose image its session keeps.
    layer.change(explain, explain_inputs, list(cams.values()), api_name="gradcam", show_progress="hidden",
                 postprocess=False,
                 api_description="Grad-CAM of the last classified image: layer, opacity, class (-1: top).")
    for control in (opacity, target):
        control.change(explain, explain_inputs, list(cams.values()), api_visibility="private",
                       show_progress="hidden", postprocess=False)
    return pixels_state


def mistakes_tab(app: App, demo: gr.Blocks) -> None:
    """The test images a model gets wrong, filtered, with every model's view of a clicked one."""
    handlers, mistakes = app.handlers, app.mistakes
    with gr.Tab("Mistakes"):
        if mistakes is None:
            gr.Markdown(f"No mistakes to show: {app.mistakes_problem}")
            return
        gr.Markdown(
            f"The **{len(mistakes):,}** test images that at least one model gets wrong. Pick a model to see "
            "its mistakes (most confident first), narrow them down, and click a tile to compare all models."
        )
        with gr.Row():
            whose = gr.Radio([(norm_title(n), n) for n in mistakes.norms], value=mistakes.norms[0],
                             label="Mistakes of")
            others = gr.Dropdown(agreement_choices(mistakes.norms, mistakes.norms[0]), value=ANY,
                                 label="Other models", info="e.g. images BN gets right but LN gets wrong")
            true_class = gr.Dropdown([NO_CLASS, *mistakes.classes], value=NO_CLASS, label="True class")
            predicted_class = gr.Dropdown([NO_CLASS, *mistakes.classes], value=NO_CLASS, label="Predicted class")
            count = gr.Slider(8, 200, value=48, step=8, label="How many to show")
        summary = gr.Markdown()
        with gr.Row(equal_height=False):
            gallery = gr.Gallery(
                label="true → predicted (confidence)", columns=6, height=640, allow_preview=False,
                object_fit="contain", format="png", elem_classes=["pixelated", "mistake-gallery"], scale=3,
                buttons=[],
            )
            with gr.Column(scale=2, min_width=320):
                picked = gr.Image(label="Selected image", interactive=False, format="png", buttons=[],
                                  height=200, width=200, elem_classes="pixelated")
                picked_text = gr.Markdown("Click a tile to see every model's probabilities for it.")
                picked_chart = gr.HTML()
        rows_state = gr.State([])
    browse_inputs = [whose, true_class, predicted_class, others, count]
    browsed = {"gallery": gallery, "summary": summary, "rows": rows_state}
    browse = named(handlers.browse, browsed)
    # The "other models" choices depend on the model, so they are reset before the gallery is.
    whose.change(
        named(handlers.agreement_dropdown, {"others": others}), whose, others, api_visibility="private",
        queue=False,
    ).then(browse, browse_inputs, list(browsed.values()), api_visibility="private", show_progress="hidden")
    for control in (true_class, predicted_class, others, count):
        control.change(browse, browse_inputs, list(browsed.values()), api_visibility="private",
                       show_progress="hidden", trigger_mode="always_last")
    demo.load(browse, browse_inputs, list(browsed.values()), api_visibility="private")
    inspected = {"picked": picked, "picked_text": picked_text, "picked_chart": picked_chart}
    gallery.select(named(handlers.inspect, inspected), rows_state, list(inspected.values()),
                   api_visibility="private")


def training_tab(app: App) -> None:
    """The results beside the reference's, the curves, the confusion matrices and what each norm computes."""
    bank = app.bank
    figures = find_figures(bank.folder)
    with gr.Tab("Training"):
        gr.Markdown(
            "### Results\nTrain accuracy is measured during the last epoch, on the augmented training "
            "images; test accuracy on CIFAR-10's 10,000 test images. " + reference_note(bank)
        )
        gr.Markdown(markdown_table(*results_table(bank)))
        differences = differences_markdown(bank)
        if differences:
            gr.Markdown(differences)
        if figures.curves:
            gr.Image(str(figures.curves), label="Loss and accuracy per epoch", show_label=False,
                     interactive=False, buttons=["fullscreen"])
        if figures.confusion:
            with gr.Row():
                for norm, path in figures.confusion.items():
                    gr.Image(str(path), label=f"{NORMS[norm].title}: confusion matrix", show_label=False,
                             interactive=False, buttons=[])
        gr.Markdown(explanation(bank))


def lab_tab(app: App, demo: gr.Blocks, pixels_state: gr.State) -> None:
    """Two live demos on one image (corruptions, batch companions), then what the lab measured."""
    lab_demo, folder = app.lab_demo, app.bank.folder
    lab_results = read_lab(folder.lab)
    with gr.Tab("Lab"):
        gr.Markdown(
            "### Try it on one image\nThe models are the ones above; pick your image (from the Classify "
            "tab) or an example."
        )
        lab_choices = lab_demo.source_choices()
        lab_source = gr.Dropdown(lab_choices, value=lab_choices[1][1] if len(lab_choices) > 1 else UPLOADED,
                                 label="Image")
        with gr.Accordion("Corrupt it: does each model still see the same thing?", open=True):
            with gr.Row():
                corruption = gr.Dropdown(corruption_choices(), value="scaling", label="Corruption")
                severity = gr.Slider(0, 5, value=3, step=1, label="Severity (0 = none)")
            with gr.Row(equal_height=False):
                corrupted = gr.Image(label="What the models see", interactive=False, format="png",
                                     buttons=[], height=200, width=200, elem_classes="pixelated", scale=0,
                                     min_width=200)
                with gr.Column():
                    corrupted_note = gr.Markdown()
                    corrupted_chart = gr.HTML()
        with gr.Accordion("Change its batch companions: who listens?", open=True):
            gr.Markdown(
                "In training mode BatchNorm normalizes with the mean and variance of the *current batch*, so "
                "its answer for your image depends on the other images in the batch; GroupNorm and LayerNorm "
                "normalize each image on its own. Here your image is put in 12 batches of random test "
                "images and each model runs in training mode (no learning happens)."
            )
            with gr.Row():
                companion_size = gr.Slider(2, 64, value=COMPANION_SIZE, step=1, label="Batch size")
                redraw = gr.Button("Draw new companions", variant="secondary")
            companion_note = gr.Markdown()
            companion_plot = gr.HTML()
        draw_state = gr.State(0)

        corrupt_inputs = [lab_source, pixels_state, corruption, severity]
        corrupted_outputs = {"corrupted": corrupted, "corrupted_chart": corrupted_chart,
                             "corrupted_note": corrupted_note}
        companion_inputs = [lab_source, pixels_state, companion_size, draw_state]
        companion_outputs = {"companion_plot": companion_plot, "companion_note": companion_note}
        corrupt = named(lab_demo.corrupted, corrupted_outputs)
        companions = named(lab_demo.companions, companion_outputs)
        for control in (lab_source, corruption, severity):
            control.change(corrupt, corrupt_inputs, list(corrupted_outputs.values()), api_visibility="private",
                           show_progress="hidden", trigger_mode="always_last")
        for control in (lab_source, companion_size):
            control.change(companions, companion_inputs, list(companion_outputs.values()),
                           api_visibility="private", show_progress="hidden", trigger_mode="always_last")
        redraw.click(lambda draw: int(draw or 0) + 1, draw_state, draw_state, api_visibility="private",
                     queue=False).then(companions, companion_inputs, list(companion_outputs.values()),
                                       api_visibility="private", show_progress="hidden")
        # A new upload in the Classify tab becomes the Lab's image.
        pixels_state.change(lambda pixels: UPLOADED if pixels is not None else gr.skip(), pixels_state,
                            lab_source, api_visibility="private", queue=False).then(
            corrupt, corrupt_inputs, list(corrupted_outputs.values()), api_visibility="private",
            show_progress="hidden").then(
            companions, companion_inputs, list(companion_outputs.values()), api_visibility="private",
            show_progress="hidden")
        demo.load(corrupt, corrupt_inputs, list(corrupted_outputs.values()), api_visibility="private")
        demo.load(companions, companion_inputs, list(companion_outputs.values()), api_visibility="private")

        gr.Markdown("### What we measured\nProduced by `python -m training.lab all`; the numbers are in "
                    "`checkpoints/lab/*.json`.")
        for name, experiment in EXPERIMENTS.items():
            with gr.Accordion(experiment.title, open=experiment.open_in_app):
                gr.Markdown(section_markdown(name, lab_results.get(name)))
                figure_path = folder.lab.figure(name)
                if name in lab_results and figure_path.is_file():
                    gr.Image(str(figure_path), show_label=False, interactive=False, buttons=["fullscreen"])


def _maps_caption(norm: str) -> str:
    """The model's name over its feature maps, and which half is which."""
    style = "flex:1;text-align:center;font-size:0.9em"
    return (f'<div style="display:flex;color:{NORMS[norm].colour};font-weight:600">'
            f'<span style="{style}">{NORMS[norm].title}: before</span><span style="{style}">after</span></div>')


def inside_tab(app: App, demo: gr.Blocks, pixels_state: gr.State) -> None:
    """One image through one normalization layer of each model: its maps, sets, statistics and values."""
    inside, examples = app.inside, app.bank.folder.example_files()
    with gr.Tab("Inside the norms"):
        gr.Markdown(
            "### What one normalization layer does to your image\nAll three compute **y = γ · (x − μ) / √(σ² + ε) "
            "+ β**, with a learned γ and β per channel; they differ only in **which values share one mean μ and "
            "variance σ²**. Pick an image and a layer; each column is one model's layer at work on it."
        )
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=220):
                first = next((path for path in examples if path.stem == "cat"), examples[0] if examples else None)
                image = gr.Image(label="Your image", type="filepath", image_mode=None,
                                 height=200, sources=["upload", "clipboard"], elem_classes="pixelated",
                                 value=str(first) if first else None)
            with gr.Column(scale=3):
                choices = inside.layer_choices()
                layer = gr.Dropdown(choices, value=choices[len(choices) // 2][1] if choices else None,
                                    label="Normalization layer (in the order the network runs them)")
                layer_note = gr.Markdown(label="the layer")
                if examples:
                    gr.Examples([[str(path)] for path in examples], inputs=[image], cache_examples=False,
                                label="Or click a CIFAR-10 test image", examples_per_page=10)
        panels: dict[str, Any] = {}
        # One row per kind of picture, the three models side by side in each, so that they line up.
        rows = {
            "summary": None,
            "maps": "**Each channel's feature map, before the layer (left) and after it (right)**, on one colour "
                    "scale per model: blue negative, white 0, red positive (its axis is under the histogram).",
            "histogram": "**The distribution of the values** before (outline) and after (filled) the layer.",
            "sets": "**Which values share one mean and variance**: the (N, C, H·W) block drawn as in the Group "
                    "Normalization paper, with this layer's sizes.",
            "statistics": "**The statistics used on this image**, channel by channel: the mean the layer subtracts "
                          "(line) and the standard deviation it divides by (band).",
        }
        for part, heading in rows.items():
            if heading:
                gr.Markdown(heading)
            with gr.Row(equal_height=True):
                for norm, names in PANELS.items():
                    label = f"{NORMS[norm].title}: {part}"
                    if part == "summary":
                        panels[names[part]] = gr.Markdown(label=label, min_height=120)
                    elif part == "maps":
                        with gr.Column(min_width=300):
                            gr.HTML(_maps_caption(norm))
                            panels[names[part]] = gr.Image(
                                label=f"{NORMS[norm].title}: feature maps before | after", show_label=False,
                                interactive=False, format="png", buttons=[], elem_classes=["pixelated", "inside-maps"])
                    else:
                        panels[names[part]] = gr.HTML(label=label, min_height=60, min_width=300)
        with gr.Accordion("Every number shown, as JSON", open=False):
            numbers = gr.JSON(label="every number", show_label=False)
    components = {"layer_note": layer_note, **panels, "numbers": numbers}
    shown = {name: components[name] for name in INSIDE_OUTPUTS}
    show = named(inside.show, shown)
    image.change(named(inside.clear, shown), None, list(shown.values()), queue=False, show_progress="hidden",
                 api_visibility="private").then(
        show, [image, layer], list(shown.values()), api_name="inside", preprocess=False,
        api_description="One image through one normalization layer (0 to the last) of each model.")
    layer.change(show, [image, layer], list(shown.values()), api_visibility="private", preprocess=False,
                 show_progress="hidden", trigger_mode="always_last")
    if choices:
        demo.load(show, [image, layer], list(shown.values()), api_visibility="private", preprocess=False)
    # A new upload in the Classify tab comes here as the 32 x 32 pixels the models saw.
    pixels_state.change(lambda pixels: png_file(np.asarray(pixels, dtype=np.uint8)) if pixels is not None
                        else gr.skip(), pixels_state, image, api_visibility="private", queue=False)


def build_demo(checkpoint_dir: Path | str | None = None, file_retention: float = 3600.0,
               models: str | None = None) -> gr.Blocks:
    """Load the models and the mistakes file from ``checkpoint_dir`` and lay out the app.

    ``models``: take the models from Hub repositories or a local folder instead (``webapp.inference.load_bank``).

    Uploads and generated images are deleted ``file_retention`` seconds after their last use.
    Sessions are lean from now on in this whole process (``webapp.sessions.use_lean_sessions``).
    """
    app = load_app(checkpoint_dir, models)
    use_lean_sessions()
    with gr.Blocks(title=TITLE, delete_cache=(sweep_interval(file_retention), file_retention)) as demo:
        gr.Markdown(f"# {TITLE}\n{INTRO}")
        banner = _banner(app.bank, app.mistakes_problem)
        gr.Markdown(banner, visible=bool(banner), elem_classes="banner")
        pixels_state = classify_tab(app)
        mistakes_tab(app, demo)
        training_tab(app)
        lab_tab(app, demo, pixels_state)
        inside_tab(app, demo, pixels_state)
    return demo
