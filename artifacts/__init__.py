"""The checkpoint folder's files: what training writes and the app reads.

``folder``: ``CheckpointFolder``, the name of every file. One module per format, its
writer and reader side by side: ``weights`` (safetensors with metadata), ``results``
(results.json and the per-norm histories), ``mistakes`` (mistakes.npz), ``lab`` (the
lab's experiments and their result files), ``trials`` (every run behind a choice of
setting), ``photos`` (the models on real photos), ``model_card`` (a model repository's README.md,
generated from the others). ``atomic``: every write is write-then-rename.
"""
