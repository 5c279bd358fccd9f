"""Training: ``python -m training`` trains the networks and writes the checkpoint folder.

``config`` is the one table of settings (the command line is derived from it), ``data``
holds CIFAR-10 on the device and builds augmented batches, ``loop`` trains one network
(resumably), ``evaluate`` measures it, ``parallel`` runs the norms side by side,
``figures`` and ``export`` write what the app shows (through ``artifacts``), ``statistics``
and ``summary`` turn several seeds into means and intervals. ``lab`` is ``python -m
training.lab``. Nothing here imports the app.
"""
