"""Composition root: the `tocsin` command, settings, transports and process wiring.

Domain code lives in ingest/, detectors/, alerts/ and schemas/; this package only assembles it.
"""
