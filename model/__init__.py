"""The networks and the normalization registry.

``norms``: one record per normalization (name, title, short name, colour, layer factory).
``network``: the CNNs. ``architectures``: one record per network with its recipe defaults,
and ``build_model``. ``inputs``: the classes and the one path from uint8 pixels to input.
``hub`` (imported on its own): any network of the registry as a Hugging Face Hub model repository.
"""

from model.architectures import (
    ARCHITECTURES,
    DEFAULT_ARCH,
    Architecture,
    build_model,
    count_parameters,
    network_fingerprint,
)
from model.inputs import CLASSES, MEAN, NUM_CLASSES, STD, pixels_to_input, standardize
from model.network import ReferenceNet, ResidualNet
from model.norms import NORMS, Norm, make_norm, norm_colour, norm_short, norm_title

__all__ = [
    "ARCHITECTURES", "CLASSES", "DEFAULT_ARCH", "MEAN", "NORMS", "NUM_CLASSES", "STD", "Architecture", "Norm",
    "ReferenceNet", "ResidualNet", "build_model", "count_parameters", "make_norm", "network_fingerprint", "norm_colour",
    "norm_short", "norm_title", "pixels_to_input", "standardize",
]
