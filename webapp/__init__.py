"""The Gradio app's pieces.

``layout`` builds the page, one function per tab, and wires the events to the handlers in
``callbacks`` (Classify, Mistakes) and ``lab`` (the Lab's demos and measured results), which
return named outputs. ``inference`` loads the three models and classifies pixels; ``preprocess``
turns an upload into 32 x 32 pixels; ``gradcam``, ``charts``, ``mistakes`` (the gallery's
filters) and ``training_report`` compute what the tabs show; ``output_files`` encodes the images
the page shows (inline, or as files it fetches) and keeps Gradio's temporary folder bounded;
``deploy`` uploads the Space.
Everything except ``layout``, ``callbacks``, ``lab`` and ``output_files`` is plain
Python/NumPy/PyTorch, so tests call it without a server.
"""
