"""The normalization lab: experiments that measure how BN, GN and LN differ.

``python -m training.lab <experiment>`` runs one (or ``all``) and writes
``<experiment>.json`` and ``<experiment>.png`` to ``checkpoints/lab/``. The experiments
are registered in ``artifacts.lab.EXPERIMENTS`` (title, module, table); each module here
has ``run(context)`` and ``figure(measured)``.
"""
