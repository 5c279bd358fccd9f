"""The normalization lab: experiments that measure how BN, GN and LN differ.

``python -m training.lab <experiment>`` runs one (or ``all``) and writes
``<experiment>.json`` and ``<experiment>.png`` to ``checkpoints/lab/``:

* ``batch_size``  -- train each norm at batch sizes 2, 8, 32, 128 (linear lr scaling)
* ``coupling``    -- how much an image's prediction moves when its batch companions change
* ``robustness``  -- test accuracy under six corruptions at five severities
* ``calibration`` -- expected calibration error and reliability diagrams
* ``cost``        -- forward and training-step time and memory of each norm
"""
