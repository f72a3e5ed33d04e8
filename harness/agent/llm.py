"""The simulated LLM: a scripted reply streamed on an exact schedule, plus sentence aggregation.

Schedule, relative to the request instant:
- first token (of any kind) at `ttft`;
- with `reasoning > 0`: invisible reasoning chunks every `token_interval` from `ttft` until `ttft + reasoning`,
  and the first visible chunk at `ttft + reasoning`;
- visible chunks of `tokens_per_chunk` words every `token_interval` after the first visible one.
Chunks are yielded at absolute targets (no accumulated sleep drift).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.agent.timing import sleep_until


@dataclass(frozen=True)
class Chunk:
    at_s: float  # target offset from the request, seconds
    text: str
    visible: bool


def schedule(reply: str, *, ttft_ms: float, reasoning_ms: float = 0.0, token_interval_ms: float = 10.0,
             tokens_per_chunk: int = 1) -> list[Chunk]:
    ttft, reasoning, step = ttft_ms / 1000.0, reasoning_ms / 1000.0, token_interval_ms / 1000.0
    chunks: list[Chunk] = []
    if reasoning > 0:
        n_reason = max(1, int(reasoning / step - 1e-9) + 1) if step > 0 else 1
        for k in range(n_reason):
            at = ttft + k * step
            if k > 0 and at >= ttft + reasoning - 1e-9:
                break
            chunks.append(Chunk(at, "(thinking)", False))
    words = reply.split()
    t_vis = ttft + reasoning
    for j in range(0, len(words), tokens_per_chunk):
        text = " ".join(words[j:j + tokens_per_chunk])
        chunks.append(Chunk(t_vis + (j // tokens_per_chunk) * step, (" " if j else "") + text, True))
    return chunks


async def stream(chunks: list[Chunk], t_request: float):
    """Yield `(chunk, t_actual)` at `t_request + chunk.at_s` on the loop clock (= host monotonic)."""
    for c in chunks:
        yield c, await sleep_until(t_request + c.at_s)


_SENTENCE_END = re.compile(r"[.!?]['\")\]]*$")


class SentenceAggregator:
    """Collects visible text; `add` returns the sentences completed by a chunk (a word ending in . ! ?)."""

    def __init__(self):
        self._buf = ""

    def add(self, text: str) -> list[str]:
        out = []
        for word in re.findall(r"\s*\S+", text):
            self._buf += word
            if _SENTENCE_END.search(word):
                out.append(self._buf.strip())
                self._buf = ""
        return out

    def flush(self) -> list[str]:
        rest, self._buf = self._buf.strip(), ""
        return [rest] if rest else []


def sentences(text: str) -> list[str]:
    agg = SentenceAggregator()
    return agg.add(text) + agg.flush()
