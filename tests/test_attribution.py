"""Attribution: stages sum exactly to the ear TTFA; missing boundaries merge; durations fill merged spans."""

import math

from harness.measure.attribution import STAGES, Boundary, attribute


def _full(t0=100.0):
    steps = [0.31, 0.1, 0.005, 0.35, 0.0, 0.02, 0.12, 0.004, 0.012, 0.025, 312 / 48000, 0.007]
    names = ["user_speech_end", "user_speech_end_detected", "stt_final", "llm_request", "llm_first_token",
             "llm_first_visible_token", "tts_request", "tts_first_audio", "audio_first_sent",
             "first_audio_arrival", "first_audio_playout", "first_audio_decoded", "agent_audio_start"]
    b, t = {}, t0
    for i, name in enumerate(names):
        b[name] = Boundary(t, "measured" if i == 0 or i >= 9 else "reconciled", 0.0005)
        if i < len(steps):
            t += steps[i]
    return b, steps


# The reference agent reports one end-of-speech instant and no VAD end: its VAD end is taken at that instant, so
# turn_detection is 0 and comes before stt on the path (its end of speech precedes its transcript).
REF_PATH = ["endpointing", "turn_detection"] + [s for s in STAGES if s not in ("endpointing", "turn_detection")]


def test_full_telemetry_every_stage_exact_and_sum():
    b, steps = _full()
    a = attribute(b)
    assert [s.name for s in a.spans] == REF_PATH
    assert a.stage_ms["turn_detection"] == 0 and a.vad_end_basis == "turn_end"
    for stage, want in zip([s for s in REF_PATH if s != "turn_detection"], steps):
        assert math.isclose(a.stage_ms[stage], want * 1e3, abs_tol=1e-6)
    assert math.isclose(sum(s.ms for s in a.spans), a.ttfa_ms, abs_tol=1e-6)
    assert a.unattributed_ms == 0 and a.residual_ms == 0 and not a.anomalies
    assert a.stage_source["endpointing"] == "reconciled" and a.stage_source["jitter_buffer"] == "measured"


def test_missing_boundaries_merge_and_never_invent():
    b, _ = _full()
    for name in ("stt_final", "llm_request", "llm_first_token", "llm_first_visible_token"):
        del b[name]
    a = attribute(b)
    merged = [s for s in a.spans if s.kind == "unattributed"]
    assert len(merged) == 1 and merged[0].covers == ["stt", "llm_dispatch", "llm_ttft", "reasoning", "aggregation"]
    for s in merged[0].covers:
        assert a.stage_ms[s] is None and a.stage_source[s] == "missing"
    assert math.isclose(sum(s.ms for s in a.spans), a.ttfa_ms, abs_tol=1e-6)


def test_durations_fill_merged_span_and_residual_is_visible():
    b = {"user_speech_end": Boundary(10.0, "measured"), "agent_audio_start": Boundary(11.0, "measured"),
         "first_audio_arrival": Boundary(10.95, "measured")}
    a = attribute(b, {"stt": 0.1, "llm_ttft": 0.4, "tts_ttfb": 0.2})
    assert a.stage_ms["llm_ttft"] == 400 and a.stage_source["llm_ttft"] == "estimated"
    assert math.isclose(a.residual_ms, 950 - 700, abs_tol=1e-6)
    assert math.isclose(sum(s.ms for s in a.spans), 1000.0, abs_tol=1e-6)


def test_duration_pins_end_boundary_when_start_known():
    b, _ = _full()
    true_llm = (b["llm_first_token"].t - b["llm_request"].t)
    del b["llm_first_token"]
    a = attribute(b, {"llm_ttft": true_llm})
    assert math.isclose(a.stage_ms["llm_ttft"], true_llm * 1e3, abs_tol=1e-6)
    assert a.stage_source["llm_ttft"] == "estimated"


def test_impossible_order_is_flagged_never_negative():
    b, _ = _full()
    b["user_vad_end"] = b["user_speech_end_detected"]
    b["stt_final"] = Boundary(b["user_vad_end"].t - 0.05, "reconciled", 0.001)
    a = attribute(b)
    assert a.stage_ms["stt"] is None and all(s.ms >= 0 for s in a.spans)
    assert any("stt_final comes 50.0 ms before user_vad_end" in x for x in a.anomalies)
    assert math.isclose(sum(s.ms for s in a.spans), a.ttfa_ms, abs_tol=1e-6)


def _rtvi_turn(visible_after_first_token_s: float):
    """A pipecat turn as vlh sees it without a clock fit: arrival-only RTVI boundaries (uncertainty: the arrival
    stamp's lateness), the first token pinned by the LLM's reported ttfb from `bot-llm-started`."""
    from harness.telemetry.collector import ARRIVAL_STAMP_S

    t0 = 50.0
    rtvi = lambda t: Boundary(t, "estimated", ARRIVAL_STAMP_S)  # noqa: E731
    b = {"user_speech_end": Boundary(t0, "measured"), "user_vad_end": rtvi(t0 + 0.30),
         "stt_final": rtvi(t0 + 0.35), "user_speech_end_detected": rtvi(t0 + 0.90), "llm_request": rtvi(t0 + 0.905),
         "llm_first_visible_token": rtvi(t0 + 0.905 + 0.300 + visible_after_first_token_s),
         "tts_request": rtvi(t0 + 1.51), "tts_first_audio": rtvi(t0 + 1.64), "audio_first_sent": rtvi(t0 + 1.643),
         "first_audio_arrival": Boundary(t0 + 1.650, "measured"), "first_audio_playout": Boundary(t0 + 1.670, "measured"),
         "first_audio_decoded": Boundary(t0 + 1.6765, "measured"), "agent_audio_start": Boundary(t0 + 1.70, "measured")}
    return b, {"llm_ttft": 0.300, "stt": 0.05, "tts_ttfb": 0.13}


def test_boundaries_inside_their_joint_uncertainty_are_coincident_not_an_anomaly():
    # the first visible token arrived 0.6 ms before request + ttfb (seen with a real pipecat bot): indistinguishable
    # within the two arrival stamps' uncertainty, so reasoning is a zero-length stage and aggregation stays its own
    b, d = _rtvi_turn(-0.0006)
    a = attribute(b, d)
    assert not a.anomalies, a.anomalies
    assert a.unattributed_ms == 0 and not [s for s in a.spans if s.kind != "stage"]
    assert a.stage_ms["reasoning"] == 0
    assert math.isclose(a.stage_ms["llm_ttft"], 300.0, abs_tol=1e-6)
    assert math.isclose(a.stage_ms["aggregation"], (1.51 - 0.905 - 0.300) * 1e3, abs_tol=1e-6)
    assert all(s.ms >= 0 for s in a.spans)
    assert math.isclose(sum(s.ms for s in a.spans), a.ttfa_ms, abs_tol=1e-6)


def test_an_ordering_beyond_the_joint_uncertainty_stays_an_anomaly():
    b, d = _rtvi_turn(-0.020)  # 20 ms early: more than two 4 ms arrival stamps can explain
    a = attribute(b, d)
    assert any("llm_first_visible_token comes 20.0 ms before llm_first_token (beyond the 8.0 ms" in x
               for x in a.anomalies), a.anomalies
    assert a.stage_ms["reasoning"] is None and a.stage_ms["aggregation"] is None
    assert all(s.ms >= 0 for s in a.spans)
    assert math.isclose(sum(s.ms for s in a.spans), a.ttfa_ms, abs_tol=1e-6)


def test_without_a_vad_end_it_is_pinned_back_from_the_transcript_by_the_stt_ttfb():
    # pipecat with RTVIObserverParams(vad_user_speaking_enabled=False): no vad-user-stopped-speaking
    b, d = _rtvi_turn(0.0)
    vad_end = b.pop("user_vad_end").t
    a = attribute(b, d)
    assert a.vad_end_basis == "stt_ttfb" and not a.anomalies
    assert a.stage_source["stt"] == "estimated" and math.isclose(a.stage_ms["stt"], 50.0, abs_tol=1e-6)
    assert math.isclose(a.stage_ms["endpointing"], (vad_end - 50.0) * 1e3, abs_tol=1e-6)
    assert math.isclose(a.stage_ms["turn_detection"], 550.0, abs_tol=1e-6) and a.overlapped_stage == "turn_detection"
    assert all(s.ms >= 0 for s in a.spans)
    assert math.isclose(sum(s.ms for s in a.spans), a.ttfa_ms, abs_tol=1e-6)


def test_without_a_vad_end_or_stt_duration_a_transcript_before_the_turn_end_leaves_it_unknown():
    b, d = _rtvi_turn(0.0)
    del b["user_vad_end"], d["stt"]
    a = attribute(b, d)
    assert a.vad_end_basis == "unknown" and not a.anomalies
    merged = [s for s in a.spans if s.kind == "unattributed"]
    assert len(merged) == 1 and merged[0].covers == ["endpointing", "stt"]
    assert math.isclose(merged[0].ms, 350.0, abs_tol=1e-6)
    # turn detection: from the transcript to the turn end, as pipecat's own breakdown counts it
    assert math.isclose(a.stage_ms["turn_detection"], 550.0, abs_tol=1e-6) and a.overlapped_stage is None
    assert all(s.ms >= 0 for s in a.spans)
    assert math.isclose(sum(s.ms for s in a.spans), a.ttfa_ms, abs_tol=1e-6)
