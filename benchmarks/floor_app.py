"""The framework's floor for `benchmarks/app_load.py`: a Gradio app that classifies nothing.

    python benchmarks/floor_app.py --port 7861

One image input (a file path), one label output, no model, and the queue and Gradio settings of app.py:
what any Gradio app costs per request before it does any work of its own.
"""

import argparse
import os
import sys
from pathlib import Path

import gradio as gr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from app import DEFAULT_CONCURRENCY as CONCURRENCY  # noqa: E402 - the project root is on the path only now
from app import GRADIO_SETTINGS, MAX_QUEUE  # noqa: E402


def classify(path: str | None) -> dict[str, float]:
    return {"nothing": 1.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max-file-size", default="20mb")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    args = parser.parse_args()
    for name, value in GRADIO_SETTINGS.items():  # the app's framework settings
        os.environ.setdefault(name, value)
    with gr.Blocks() as demo:
        image = gr.Image(type="filepath")
        label = gr.Label()
        image.change(classify, image, label, api_name="classify")
    demo.queue(default_concurrency_limit=args.concurrency, max_size=MAX_QUEUE)
    demo.launch(server_name="127.0.0.1", server_port=args.port, share=False, max_file_size=args.max_file_size)


if __name__ == "__main__":
    main()
