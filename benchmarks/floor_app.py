"""The framework's floor for `benchmarks/app_load.py`: a Gradio app that classifies nothing.

    python benchmarks/floor_app.py --port 7861

One image input (a file path), one label output, no model, and the queue settings of app.py:
what any Gradio app costs per request before it does any work of its own.
"""

import argparse
import os

import gradio as gr

# The same as app.py's defaults: two requests computed at once, up to 256 waiting.
CONCURRENCY = 2
MAX_QUEUE = 256


def classify(path: str | None) -> dict[str, float]:
    return {"nothing": 1.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max-file-size", default="20mb")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    args = parser.parse_args()
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    with gr.Blocks() as demo:
        image = gr.Image(type="filepath")
        label = gr.Label()
        image.change(classify, image, label, api_name="classify")
    demo.queue(default_concurrency_limit=args.concurrency, max_size=MAX_QUEUE)
    demo.launch(server_name="127.0.0.1", server_port=args.port, share=False, max_file_size=args.max_file_size)


if __name__ == "__main__":
    main()
