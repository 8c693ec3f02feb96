"""A simulated LLM provider with scripted latency and failures, speaking the
OpenAI, Anthropic Messages and Gemini wire formats.

One server hosts named profiles, each a separate upstream at `/{profile}`
(no prefix is profile `default`): OpenAI at `/{profile}/v1/chat/completions`,
Anthropic at `/{profile}/v1/messages`, Gemini at
`/{profile}/v1beta/models/{model}:generateContent` (and
`:streamGenerateContent?alt=sse`). Each profile follows a `Behavior`: time
to first token, token interval, length, and one failure mode. Behaviours
change at run time through `/_sim/profiles`, or per request with the
`x-sim-behavior` header. Streamed content is the numbered words
"w1 w2 ... wN", so a client can check continuity; a request ending in an
assistant text "... wK" is continued from "w(K+1)", and one that declares
tools and says "call a tool" gets a call of its first tool (`request.py`).

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
