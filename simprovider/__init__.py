"""A simulated OpenAI-compatible provider with scripted latency and failures.

One server hosts named profiles, each a separate upstream at `/{profile}/v1`
(`/v1` is profile `default`). Each profile follows a `Behavior`: time to
first token, token interval, length, and one failure mode. Behaviours change
at run time through `/_sim/profiles`, or per request with the
`x-sim-behavior` header. Streamed content is the numbered words
"w1 w2 ... wN", so a client can check continuity.

Run it with `python -m simprovider --help`, or from Python with
`start_simulator()`; `build_app()` gives the ASGI app for in-process use.
"""

from .behavior import Behavior, FailureMode
from .process import SimulatorError, SimulatorProcess, start_simulator
from .server import BEHAVIOR_HEADER, PROFILE_HEADER, build_app

__all__ = [
    "BEHAVIOR_HEADER",
    "PROFILE_HEADER",
    "Behavior",
    "FailureMode",
    "SimulatorError",
    "SimulatorProcess",
    "build_app",
    "start_simulator",
]
