"""Pure numeric kernels: numpy/scipy only, no I/O, no Faust, Kafka or pydantic. State is plain data."""
