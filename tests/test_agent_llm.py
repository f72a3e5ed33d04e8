"""The simulated LLM's schedule and the sentence aggregation."""

from __future__ import annotations

import asyncio

import pytest

from harness.agent.llm import SentenceAggregator, schedule, sentences, stream


def test_schedule_without_reasoning():
    ch = schedule("Hello there. How are you?", ttft_ms=300, token_interval_ms=10)
    assert all(c.visible for c in ch)
    assert [round(c.at_s, 6) for c in ch] == [0.3, 0.31, 0.32, 0.33, 0.34]
    assert "".join(c.text for c in ch) == "Hello there. How are you?"


def test_reasoning_chunks_are_invisible_and_delay_the_first_visible_token():
    ch = schedule("Sure.", ttft_ms=350, reasoning_ms=800, token_interval_ms=100)
    hidden = [c for c in ch if not c.visible]
    visible = [c for c in ch if c.visible]
    assert hidden[0].at_s == pytest.approx(0.35)  # the first token (what a provider's TTFT measures)
    assert len(hidden) == 8 and all(c.at_s < 0.35 + 0.8 for c in hidden)
    assert visible[0].at_s == pytest.approx(1.15) and visible[0].text == "Sure."


def test_tokens_per_chunk_groups_words():
    ch = schedule("a b c d e", ttft_ms=0, token_interval_ms=5, tokens_per_chunk=2)
    assert [c.text for c in ch] == ["a b", " c d", " e"]
    assert [round(c.at_s, 6) for c in ch] == [0.0, 0.005, 0.01]


def test_sentence_aggregation():
    agg = SentenceAggregator()
    assert agg.add("Hello") == []
    assert agg.add(" there.") == ["Hello there."]
    assert agg.add(" Is it 3.5") == []
    assert agg.add(" now? Yes") == ["Is it 3.5 now?"]
    assert agg.flush() == ["Yes"]
    assert sentences('He said "stop!" Then left') == ['He said "stop!"', "Then left"]


async def test_stream_yields_at_absolute_targets():
    loop = asyncio.get_running_loop()
    ch = schedule("one two three four", ttft_ms=30, token_interval_ms=15)
    t0 = loop.time()
    got = [(c, t) async for c, t in stream(ch, t0)]
    for c, t in got:
        assert t >= t0 + c.at_s  # never early
    assert len(got) == 4
