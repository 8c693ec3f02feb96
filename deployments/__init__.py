"""Ray Serve wiring for nemo-router: the ingress, the ``LatencyTracker``
actor, the provider-caller deployment and the application builder."""

__all__: list[str] = []
