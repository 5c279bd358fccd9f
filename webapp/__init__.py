"""The Gradio app's pieces: image loading, inference, Grad-CAM, charts, the mistake gallery and the layout.

Everything except ``layout`` and ``callbacks`` is plain Python/NumPy/PyTorch, so tests call it without a browser.
"""
