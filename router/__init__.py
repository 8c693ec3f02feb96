"""nemo-router's pure core: config, routing state, wire formats.

Imports nothing from Ray and does no network I/O, so it is tested fast and
in isolation; ``deployments`` wires it into Ray Serve.
"""

__all__: list[str] = []
