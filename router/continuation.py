"""Mid-stream continuation: carrying a turn that broke after tokens were
already spoken over to another endpoint, without repeating or dropping
words at the seam.

The continuation request is the original conversation plus the partial
assistant reply as a trailing assistant message (prefill, as Anthropic and
vLLM's ``continue_final_message`` honour it; other models usually pick up
from it too). What comes back is spliced by ``Seam``: it holds the first
``lookahead_chars`` of the continuation, drops any words that repeat the
tail of the text already sent (a model restarting its sentence), and makes
sure two words do not run together. After the seam, text passes unchanged.
"""

from __future__ import annotations

__all__ = ["Seam", "continuation_messages"]

DEFAULT_LOOKAHEAD_CHARS = 48
MAX_OVERLAP_WORDS = 12


def continuation_messages(messages: list[dict], sent_text: str) -> list[dict]:
    """The conversation to send the next endpoint: the partial reply appended."""
    return [*messages, {"role": "assistant", "content": sent_text}]


class Seam:
    """Splices continuation text onto ``sent_text``.

    ``feed(delta)`` returns the text to forward now (possibly empty while the
    seam is undecided); ``flush()`` returns whatever is held when the
    continuation ends early.
    """

    def __init__(self, sent_text: str, lookahead_chars: int = DEFAULT_LOOKAHEAD_CHARS):
        self._sent = sent_text
        self._lookahead_chars = lookahead_chars
        self._held = ""
        self._decided = False

    def feed(self, delta: str) -> str:
        if self._decided:
            return delta
        self._held += delta
        if len(self._held) < self._lookahead_chars:
            return ""
        # Decide on whole words only: a word cut in half cannot be compared.
        cut = max(self._held.rfind(" "), self._held.rfind("\n"))
        if cut <= 0:
            return ""
        head, tail = self._held[:cut], self._held[cut:]
        spliced = _splice(self._sent, head)
        if not spliced.strip():
            # Every held word repeated what was sent: keep looking.
            self._held = tail.lstrip()
            return ""
        self._decided, self._held = True, ""
        return spliced + tail

    def flush(self) -> str:
        if self._decided:
            return ""
        self._decided = True
        text, self._held = _splice(self._sent, self._held), ""
        return text


def _splice(sent: str, continuation: str) -> str:
    sent_words = sent.split()
    cont_words = continuation.split()
    overlap = 0
    for k in range(min(len(sent_words), len(cont_words), MAX_OVERLAP_WORDS), 0, -1):
        if sent_words[-k:] == cont_words[:k]:
            overlap = k
            break
    if overlap:
        # Drop the repeated words and the whitespace before them; keep the
        # continuation's own spacing after them.
        remainder = continuation.lstrip()
        for word in cont_words[:overlap]:
            remainder = remainder[len(word):].lstrip() if remainder.startswith(word) else remainder
        continuation = " " + remainder if remainder else ""
    if sent and continuation and not sent[-1].isspace() and not continuation[0].isspace():
        # The first piece of a new reply usually has no leading space.
        continuation = " " + continuation
    return continuation
