"""The CIFAR-10 Normalization Lab: `python app.py` serves the Gradio app on the shipped checkpoints.

Binds to 127.0.0.1 unless told otherwise (--host, or GRADIO_SERVER_NAME, which Hugging Face
Spaces sets to 0.0.0.0). Run `python app.py --help` for the options.
"""

import argparse
import os
import sys
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
DEFAULT_CONCURRENCY = 2
MAX_QUEUE = 256  # requests waiting at most; more are told the queue is full
GRADIO_SETTINGS = {  # defaults; the environment can set each
    # The app needs no network; Gradio would otherwise send usage statistics.
    "GRADIO_ANALYTICS_ENABLED": "False",
    # Gradio rebuilds its monitoring page's summary (a pandas table of up to 10,000 past events)
    # after every event; every 100 events keeps it current enough, and the server's time per
    # request flat as the records pile up.
    "GRADIO_ANALYTICS_CACHE_FREQUENCY": "100",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python app.py", description="Serve the CIFAR-10 Normalization Lab.")
    parser.add_argument("--checkpoint-dir", type=Path, default=Path(os.environ.get("CHECKPOINT_DIR", "checkpoints")),
                        help="folder written by `python -m training` (default: $CHECKPOINT_DIR, else checkpoints)")
    parser.add_argument("--models", default=os.environ.get("HUB_MODELS") or None, metavar="OWNER/PREFIX or FOLDER",
                        help="take the three models from the Hub repositories OWNER/PREFIX-bn, -gn and -ln, or from "
                        "a local folder with bn/, gn/ and ln/ in their layout (`python -m training.publish "
                        "--output-dir` writes one); the other tabs still read the checkpoint folder "
                        "(default: $HUB_MODELS, else the checkpoint folder's own models, no network)")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", DEFAULT_HOST),
                        help="address to bind; 0.0.0.0 serves the whole network "
                        f"(default: $GRADIO_SERVER_NAME, else {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", DEFAULT_PORT)),
                        help=f"port (default: $GRADIO_SERVER_PORT, else {DEFAULT_PORT})")
    parser.add_argument("--max-file-size", default=os.environ.get("MAX_UPLOAD_SIZE", "20mb"),
                        help="largest upload accepted, e.g. 20mb (default: $MAX_UPLOAD_SIZE, else 20mb)")
    parser.add_argument("--concurrency", type=int, default=int(os.environ.get("APP_CONCURRENCY", DEFAULT_CONCURRENCY)),
                        help="requests of one kind computed at the same time "
                        f"(default: $APP_CONCURRENCY, else {DEFAULT_CONCURRENCY})")
    parser.add_argument("--file-retention", type=float, default=os.environ.get("FILE_RETENTION_SECONDS", "3600"),
                        help="seconds an uploaded photo, a generated image or an idle visitor's session is kept "
                        "after its last use (default: $FILE_RETENTION_SECONDS, else 3600: an hour)")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("TORCH_NUM_THREADS", 1)),
                        help="PyTorch threads per request (default: $TORCH_NUM_THREADS, else 1)")
    args = parser.parse_args(argv)
    if args.models is not None:
        from model.hub import is_repo_id

        if not Path(args.models).is_dir() and not is_repo_id(args.models):
            parser.error(f"--models {args.models}: neither a folder nor a Hub repository prefix (OWNER/PREFIX)")
    if not args.file_retention > 0:
        parser.error(f"--file-retention must be a positive number of seconds (got {args.file_retention})")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for name, value in GRADIO_SETTINGS.items():
        os.environ.setdefault(name, value)
    # Imported here so that `--help` is instant and start-up work happens in one visible place.
    import gradio as gr
    import torch

    from webapp.layout import CSS, build_demo
    from webapp.output_files import FolderSweeper, temporary_folder
    from webapp.sessions import freeze_start_up, release_idle_sessions

    # The models are tiny: one thread per request, and several requests side by side, use the cores best.
    torch.set_num_threads(max(1, args.threads))
    demo = build_demo(args.checkpoint_dir, file_retention=args.file_retention, models=args.models)
    FolderSweeper(temporary_folder(), args.file_retention).start()
    demo.queue(default_concurrency_limit=max(1, args.concurrency), max_size=MAX_QUEUE)
    freeze_start_up()
    demo.launch(
        server_name=args.host,
        server_port=args.port,
        share=False,
        max_file_size=args.max_file_size,
        theme=gr.themes.Soft(primary_hue="blue"),
        css=CSS,
        footer_links=["api", "gradio"],
        app_kwargs={"lifespan": release_idle_sessions(args.file_retention)},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
