"""Which conversation belongs to which call: by conversation.id = the call's WebRTC id, else by the agent's
speech-end instants against the call's utterance ends; each conversation is claimed once."""

from __future__ import annotations

from harness.telemetry.otlp_calls import OtlpIntake
from harness.telemetry.otlp_decode import OtlpSpan

W0 = 1_780_000_000_000_000_000  # wall ns at host monotonic 1000.0


class Received:
    """What a receiver hands over: spans and its (monotonic, wall) pairs."""

    def __init__(self, spans):
        self._spans = spans
        self.clock_pairs = [(1000.0, W0)]

    def spans(self):
        return list(self._spans)


def ns(mono):
    return W0 + int(round((mono - 1000.0) * 1e9))


def conv(trace, cid, speech_ends):
    out = [OtlpSpan(trace, trace + "c", "", "conversation", ns(speech_ends[0] - 2), ns(speech_ends[-1] + 3),
                    {"conversation.id": cid})]
    for k, e in enumerate(speech_ends):
        t = trace + f"t{k}"
        out.append(OtlpSpan(trace, t, trace + "c", "turn", ns(e - 1), ns(e + 2),
                            {"turn.number": k + 1, "turn.user_bot_latency_seconds": 0.9}))
        out.append(OtlpSpan(trace, t + "s", t, "stt", ns(e - 1), ns(e + 0.3), {"metrics.ttfb": 0.3}))
    return out


def test_claims():
    a = conv("aa", "pc-A", [1010.0, 1020.0])  # call A's turns end at 1010, 1020
    b = conv("bb", "bot-own-id", [1013.0, 1023.0])  # call B's at 1013, 1023 — its id is the bot's own
    late = conv("cc", "other", [1200.0])  # outside both calls
    intake = OtlpIntake(Received(a + b + late))
    got_b = intake.claim(1000.0, 1030.0, [1012.95, 1022.95], "pc-B")
    assert [k for k, *_ in got_b] == ["conversation:bot-own-id"]  # by its speech ends (A's are 2.95 s away)
    got_a = intake.claim(1000.0, 1030.0, [1015.0], "pc-A")
    assert [k for k, *_ in got_a] == ["conversation:pc-A"]  # by id, though its speech ends are far from 1015
    assert intake.claim(1000.0, 1300.0, [1010.0, 1013.0], "pc-A") == []  # claimed once; cc is 187 s away
    assert intake.claim(1100.0, 1300.0, [1200.05], None)[0][0] == "conversation:other"
    assert intake.frameworks == {"pipecat"}


def test_arrival_only_instants_move_back_by_the_transit_of_their_neighbour():
    """RTVI `user-stopped-speaking` (no OTLP twin) arrives 0.5 ms before `bot-llm-started`, whose OTLP stamp says
    it travelled 2.9 ms: the turn end moves back 2.9 ms (before the LLM request, as pipecat sent it). A message
    far from any twin (300 ms) stays where it arrived; OTLP-stamped names are left alone."""
    from harness.telemetry.events import Event
    from harness.telemetry.otlp_calls import align_arrivals

    def est(name, t):
        return Event(name, t, t_host=t, source="estimated", origin="rtvi:x")

    stamped = [Event("llm_request", 5.0, t_host=5.0, source="reconciled", origin="otlp:pipecat:llm")]
    own = [est("user_speech_end_detected", 5.0024), est("llm_request", 5.0029), est("llm_first_visible_token", 5.3)]
    got = {e.name: e for e in align_arrivals(own, stamped)}
    assert abs(got["user_speech_end_detected"].t_host - (5.0024 - 0.0029)) < 1e-9
    assert got["user_speech_end_detected"].t_host < 5.0 and got["user_speech_end_detected"].source == "estimated"
    assert got["user_speech_end_detected"].raw["transit_ms"] == 2.9
    assert got["llm_request"].t_host == 5.0029 and got["llm_first_visible_token"].t_host == 5.3
    assert align_arrivals(own, []) == own
