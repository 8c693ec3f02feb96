"""The operator's console: pages the router serves itself (the dashboard at
``/dashboard``, the playground at ``/playground``). Hand-written HTML, CSS and
JavaScript under ``static/``, shipped in the package: no build step, nothing
fetched from the internet at run time."""

from deployments.console.assets import console_file
from deployments.console.dashboard import ConsoleData

__all__ = ["ConsoleData", "console_file"]
