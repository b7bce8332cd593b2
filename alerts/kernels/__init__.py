"""Pure numeric kernels for the alert layer (network confirmation, location, cross-bearing fixes).

numpy only, no I/O, no Faust, Kafka, pydantic or project imports; inputs are plain JSON-friendly
values, results are frozen dataclasses with ``to_dict()``.
"""
