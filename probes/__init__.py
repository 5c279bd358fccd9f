"""Probes of trained networks that the lab measures and the app demonstrates.

``corruptions``: six corruptions at five severities. ``coupling``: an image among random
batch companions, the one sweep used by both the lab and the app's demo.
"""
