"""On-device (LiteRT) training export for keras-medyate.

Empty for now: the builtin-only exporter lands with issue #4.
"""
