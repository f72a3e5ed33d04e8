"""Scenario files: valid ones load with their defaults; every kind of mistake names file, line, field and what is allowed."""

from __future__ import annotations

import re
import wave
from pathlib import Path

import numpy as np
import pytest

from harness.results import slo as slo_mod
from harness.cli import main as cli_main
from harness.errors import VlhError
from harness.suite.scenario import SLO, Scenario, known_profiles, load_scenario, load_scenarios
from harness.suite.builtin import builtin_path

ROOT = Path(__file__).resolve().parents[1]
NIGHTLY = builtin_path("nightly")

GOOD = """\
name: short
description: one question
agent: {profile: fast, tts_ttfb_ms: 300}
repetitions: 3
timeout_s: 8
turns:
  - say: "What time is it?"
    rate: 180
    pause_after_ms: 400
  - say: "Stop."
    barge_in_after_ms: 700
slo:
  ttfa_p95_ms: 900
  interruption_p95_ms: 500
"""


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def write_wav(path: Path, seconds: float = 0.2, rate: int = 16000) -> Path:
    x = (np.sin(np.arange(int(seconds * rate)) / 5.0) * 8000).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(x.tobytes())
    return path


def error_of(path: Path) -> str:
    with pytest.raises(VlhError) as ei:
        load_scenario(path)
    return str(ei.value)


def test_good_file_loads_with_values_and_defaults(tmp_path):
    sc = load_scenario(write(tmp_path, GOOD))
    assert sc.name == "short" and sc.repetitions == 3 and sc.timeout_s == 8
    assert sc.agent.profile == "fast" and sc.agent.overrides() == {"tts_ttfb_ms": 300}
    assert sc.agent.as_data() == {"profile": "fast", "tts_ttfb_ms": 300}
    assert sc.turns[0].rate == 180 and sc.turns[0].pause_after_ms == 400 and sc.turns[0].barge_in_after_ms is None
    assert sc.turns[1].barge_in_after_ms == 700 and sc.turns[1].pause_after_ms == 500  # default
    assert sc.slo.thresholds() == {"ttfa_p95_ms": 900, "interruption_p95_ms": 500}
    assert sc.barge_in and sc.source == (tmp_path / "s.yaml").resolve()


def test_defaults_and_agent_shorthand(tmp_path):
    sc = load_scenario(write(tmp_path, "name: a\nturns:\n  - say: hi\nagent: reasoning\n"))
    assert sc.repetitions == 1 and sc.timeout_s == 15 and sc.description == ""
    assert sc.agent.profile == "reasoning" and sc.agent.overrides() == {}
    assert sc.slo.thresholds() == {}
    sc2 = load_scenario(write(tmp_path, "name: b\nturns:\n  - say: hi\n", "b.yaml"))
    assert sc2.agent.profile == "typical"


def test_fingerprint_tracks_the_stimulus_only(tmp_path):
    base = load_scenario(write(tmp_path, GOOD)).fingerprint
    other_agent = GOOD.replace("tts_ttfb_ms: 300", "tts_ttfb_ms: 450")
    other_slo = GOOD.replace("ttfa_p95_ms: 900", "ttfa_p95_ms: 700")
    other_turn = GOOD.replace("What time is it?", "What day is it?")
    other_reps = GOOD.replace("repetitions: 3", "repetitions: 4")
    assert load_scenario(write(tmp_path, other_agent)).fingerprint == base  # the agent is what nights compare
    assert load_scenario(write(tmp_path, other_slo)).fingerprint == base
    assert load_scenario(write(tmp_path, other_turn)).fingerprint != base
    assert load_scenario(write(tmp_path, other_reps)).fingerprint != base


def test_wav_turn_resolves_relative_to_the_file_and_its_content_is_fingerprinted(tmp_path):
    (tmp_path / "audio").mkdir()
    wav = write_wav(tmp_path / "audio" / "q.wav")
    text = "name: w\nturns:\n  - wav: audio/q.wav\n    level_dbfs: -20\n    noise: {type: pink, snr_db: 20}\n"
    sc = load_scenario(write(tmp_path, text))
    assert sc.turns[0].wav == wav.resolve() and sc.turns[0].noise.snr_db == 20
    fp = sc.fingerprint
    write_wav(wav, seconds=0.3)
    assert load_scenario(tmp_path / "s.yaml").fingerprint != fp


# ---- every kind of mistake: file, line, field, what is allowed ---------------------------------------------------
MISTAKES = [
    # (id, yaml text, line, field, fragments that must be in the message)
    ("yaml-syntax", "name: a\nturns:\n  - say: [unclosed\n    pause_after_ms: 3\n", None, "YAML syntax", ["indentation"]),
    ("unknown-field", "name: a\nturns:\n  - say: hi\n    pause_ms: 3\n", 4, "turns[0].pause_ms",
     ["unknown field", "did you mean pause_after_ms", "allowed: say, engine, voice, rate, wav"]),
    ("wrong-type", "name: a\nturns:\n  - say: hi\n    pause_after_ms: \"300ms\"\n", 4, "turns[0].pause_after_ms",
     ["valid integer", "'300ms'", "allowed: milliseconds"]),
    ("out-of-range", "name: a\nrepetitions: 0\nturns:\n  - say: hi\n", 2, "repetitions",
     ["greater than or equal to 1", "allowed: a whole number from 1 to 1000"]),
    ("bad-choice", "name: a\nturns:\n  - say: hi\n    noise:\n      type: brown\n      snr_db: 20\n", 5,
     "turns[0].noise.type", ["'brown'", "allowed: white or pink"]),
    ("missing-field", "name: a\ndescription: no turns here\n", 1, "turns", ["required field is missing", "allowed: a list of 1 to 200 turns"]),
    ("missing-wav", "name: a\nturns:\n  - say: hi\n  - say: hi\n    wav: x.wav\n", 5, "turns[1].wav", ["file not found", "x.wav"]),
    ("neither", "name: a\nturns:\n  - say: hi\n  - pause_after_ms: 100\n", 4, "turns[1]", ["exactly one of say: or wav:"]),
    ("duplicate-key", "name: a\nturns:\n  - say: hi\nname: b\n", 4, "name", ["appears twice", "first on line 1"]),
    ("barge-in-first", "name: a\nturns:\n  - say: hi\n    barge_in_after_ms: 300\n", 4, "turns[0].barge_in_after_ms",
     ["no agent reply to interrupt"]),
    ("yes-is-not-text", "name: a\nturns:\n  - say: yes\n", 3, "turns[0].say", ["valid string", "True", "in quotes"]),
    ("slo-unknown", "name: a\nturns:\n  - say: hi\nslo:\n  ttfa_p99_ms: 3\n", 5, "slo.ttfa_p99_ms",
     ["unknown field", "allowed: ttfa_p50_ms, ttfa_p95_ms, no_response_rate"]),
    ("slo-range", "name: a\nturns:\n  - say: hi\nslo:\n  no_response_rate: 5\n", 5, "slo.no_response_rate",
     ["less than or equal to 1", "allowed: a fraction from 0 to 1"]),
    ("interruption-without-barge-in", "name: a\nturns:\n  - say: hi\nslo:\n  interruption_p95_ms: 3\n", 4, "slo",
     ["need a barge-in turn"]),
    ("bad-name", "name: My Scenario\nturns:\n  - say: hi\n", 1, "name", ["'My Scenario'", "allowed: lower-case letters"]),
    ("override-value", "name: a\nturns:\n  - say: hi\nagent:\n  profile: fast\n  net_loss: {a: 1}\n", 6, "agent.net_loss",
     ["a number, text, true/false"]),
    ("not-a-mapping", "- say: hi\n", 1, None, ["must be a mapping", "allowed: name, description, turns"]),
    ("empty", "", 1, None, ["empty"]),
]


@pytest.mark.parametrize("kind,text,line,field,frags", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_each_mistake_names_file_line_field_and_allowed(tmp_path, kind, text, line, field, frags):
    path = write(tmp_path, text)
    msg = error_of(path)
    assert "\n" not in msg, msg  # one problem: one line
    m = re.match(rf"^{re.escape(str(path))}:(\d+): ", msg)
    assert m, msg
    if line is not None:
        assert int(m.group(1)) == line, msg
    if field is not None:
        assert f": {field}: " in msg, msg
    for frag in frags:
        assert frag in msg, (frag, msg)


def test_yaml_syntax_error_line_is_where_the_parser_stopped(tmp_path):
    path = write(tmp_path, "name: a\nturns:\n  - say: hi\n   bad: indent\n")
    msg = error_of(path)
    assert re.match(rf"^{re.escape(str(path))}:4: YAML syntax", msg), msg


def test_missing_wav_is_named_and_non_wav_is_refused(tmp_path):
    msg = error_of(write(tmp_path, "name: a\nturns:\n  - wav: sounds/missing.wav\n"))
    assert str((tmp_path / "sounds" / "missing.wav").resolve()) in msg and ":3: turns[0].wav:" in msg
    (tmp_path / "fake.wav").write_text("not audio at all")
    msg = error_of(write(tmp_path, "name: a\nturns:\n  - wav: fake.wav\n"))
    assert "not a WAV file" in msg and "fake.wav" in msg


def test_say_and_wav_together_is_refused(tmp_path):
    write_wav(tmp_path / "q.wav")
    msg = error_of(write(tmp_path, "name: a\nturns:\n  - say: hi\n  - say: hi\n    wav: q.wav\n"))
    assert ":4: turns[1]:" in msg and "exactly one of say: or wav:" in msg and "both" in msg


def test_voice_or_rate_on_a_wav_turn_is_refused(tmp_path):
    write_wav(tmp_path / "q.wav")
    msg = error_of(write(tmp_path, "name: a\nturns:\n  - wav: q.wav\n    rate: 200\n"))
    assert ":3: turns[0]:" in msg and "say: turns only" in msg


def test_unknown_profile_lists_the_profiles(tmp_path):
    assert known_profiles(), "the reference agent's profiles were not found (PROFILES_DIR)"
    msg = error_of(write(tmp_path, "name: a\nturns:\n  - say: hi\nagent:\n  profile: fsat\n"))
    assert ":5: agent.profile:" in msg and "did you mean fast" in msg
    for name in known_profiles():
        assert name in msg
    msg = error_of(write(tmp_path, "name: a\nturns:\n  - say: hi\nagent: nope\n"))
    assert ":4: agent.profile:" in msg


def test_unknown_voice_is_refused_before_running(tmp_path):
    try:
        from harness.audio.synth import voices

        voices()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"espeak-ng not usable here: {exc}")
    msg = error_of(write(tmp_path, "name: a\nturns:\n  - say: hi\n  - say: ho\n    voice: nosuchvoice\n"))
    assert ":5: turns[1].voice:" in msg and "en-us" in msg
    assert load_scenario(write(tmp_path, "name: a\nturns:\n  - say: hi\n    voice: en-us\n")).turns[0].voice == "en-us"


def test_all_problems_of_a_file_are_reported_one_per_line(tmp_path):
    path = write(tmp_path, "name: a\nrepetitions: -1\nturns:\n  - say: hi\n    rate: 10\n")
    lines = error_of(path).splitlines()
    assert lines[0].startswith("2 problems")
    assert any(":2: repetitions:" in x for x in lines) and any(":5: turns[0].rate:" in x for x in lines)


def test_load_scenarios_sorted_and_problems_of_every_file_together(tmp_path):
    write(tmp_path, "name: b\nturns:\n  - say: hi\n", "b.yaml")
    write(tmp_path, "name: a\nturns:\n  - say: hi\n", "a.yml")
    (tmp_path / "notes.txt").write_text("ignored")
    assert [s.name for s in load_scenarios(tmp_path)] == ["a", "b"]
    write(tmp_path, "name: c\nturns: []\n", "c.yaml")
    write(tmp_path, "name: d\nturns:\n  - sya: hi\n", "d.yaml")
    with pytest.raises(VlhError) as ei:
        load_scenarios(tmp_path)
    msg = str(ei.value)
    assert "c.yaml:2: turns:" in msg and "d.yaml:3: turns[0].sya:" in msg


def test_duplicate_names_across_files(tmp_path):
    write(tmp_path, "name: same\nturns:\n  - say: hi\n", "a.yaml")
    write(tmp_path, "description: x\nname: same\nturns:\n  - say: hi\n", "b.yaml")
    with pytest.raises(VlhError) as ei:
        load_scenarios(tmp_path)
    assert re.search(r"b\.yaml:2: name: duplicate scenario name 'same' \(also in .*a\.yaml\)", str(ei.value))


def test_empty_or_missing_directory(tmp_path):
    with pytest.raises(VlhError, match="no scenario files"):
        load_scenarios(tmp_path)
    with pytest.raises(VlhError, match="no such scenario directory"):
        load_scenarios(tmp_path / "nope")
    with pytest.raises(VlhError, match="no such scenario file"):
        load_scenario(tmp_path / "nope.yaml")


def test_slo_fields_match_what_slo_module_evaluates():
    assert list(SLO.model_fields) == list(slo_mod.SLOS)


def test_nightly_set_is_valid_and_covers_the_required_situations():
    scs = {s.name: s for s in load_scenarios(NIGHTLY)}
    assert {"short-question", "long-question", "multi-turn", "noisy-mic", "bad-network", "barge-in",
            "reasoning-model", "phone-call"} <= set(scs)
    # the phone call differs from short-question only in its transport
    phone, short = scs["phone-call"], scs["short-question"]
    assert (phone.transport, phone.provider) == ("ws-telephony", "twilio") and phone.turns == short.turns
    assert all(s.transport is None for n, s in scs.items() if n != "phone-call")
    assert len(scs["multi-turn"].turns) >= 3
    assert len(scs["long-question"].turns[0].say.split()) > 3 * len(scs["short-question"].turns[0].say.split())
    noisy = scs["noisy-mic"].turns[0].noise
    assert noisy is not None and noisy.snr_db == 20
    # every scenario runs the typical agent and changes one thing (so only that thing differs from short-question)
    assert {s.agent.profile for s in scs.values()} == {"typical"}
    assert scs["bad-network"].agent.overrides() == {"net_delay_ms": 40, "net_jitter_ms": 15,
                                                    "net_jitter_dist": "uniform", "net_loss": 0.02}
    assert scs["reasoning-model"].agent.overrides() == {"reasoning_ms": 800}
    assert all(not scs[n].agent.overrides() for n in scs if n not in ("bad-network", "reasoning-model"))
    assert scs["barge-in"].barge_in and scs["barge-in"].slo.interruption_p95_ms is not None
    for s in scs.values():
        assert s.slo.ttfa_p95_ms and s.slo.no_response_rate == 0, s.name
        # enough answered turns per night for the regression statistics (regress.Policy.min_turns_tonight)
        assert len(s.turns) * s.repetitions >= 5, s.name
    if known_profiles():
        assert {s.agent.profile for s in scs.values()} <= set(known_profiles())


def test_cli_validate(tmp_path, capsys):
    assert cli_main(["scenarios", "validate", str(NIGHTLY)]) == 0
    out = capsys.readouterr().out
    assert "8 scenario file(s) valid" in out and "barge-in" in out
    write(tmp_path, "name: a\nturns:\n  - say: hi\n    noise: {type: brown, snr_db: 3}\n")
    assert cli_main(["scenarios", "validate", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vlh: error: ") and "s.yaml:4: turns[0].noise.type" in err and "Traceback" not in err


def test_scenario_is_immutable(tmp_path):
    sc = load_scenario(write(tmp_path, GOOD))
    with pytest.raises(Exception):
        sc.name = "other"  # type: ignore[misc]
    assert isinstance(sc, Scenario)


def test_builtin_nightly_set_ships_in_the_package():
    assert NIGHTLY.is_dir() and NIGHTLY.parent.parent == Path(__file__).resolve().parents[1] / "harness" / "suite"
    assert len(load_scenarios(NIGHTLY)) == 8
    with pytest.raises(VlhError, match="no built-in scenario set 'nope'; there are: nightly"):
        builtin_path("nope")


def test_turn_engine_and_voice_are_checked_with_file_and_line(tmp_path):
    sc = load_scenario(write(tmp_path, "name: a\nturns:\n  - say: hi\n    engine: flite\n    voice: slt\n"
                                       "  - say: ho\n    engine: festival\n    voice: kal\n"))
    assert [(t.engine, t.voice) for t in sc.turns] == [("flite", "slt"), ("festival", "kal")]
    msg = error_of(write(tmp_path, "name: a\nturns:\n  - say: hi\n  - say: ho\n    engine: polly\n"))
    assert ":5: turns[1].engine: unknown TTS engine 'polly' (allowed: espeak, flite, festival)" in msg
    msg = error_of(write(tmp_path, "name: a\nturns:\n  - say: hi\n    engine: flite\n    voice: en-us\n"))
    assert ":5: turns[0].voice: flite has no voice 'en-us' (allowed: " in msg and "slt" in msg
    assert len(msg.strip().splitlines()) == 1


def test_agent_tts_engine_is_checked(tmp_path):
    msg = error_of(write(tmp_path, "name: a\nturns:\n  - say: hi\nagent:\n  profile: typical\n  tts_engine: polly\n"))
    assert ":6: agent.tts_engine: unknown TTS engine 'polly'" in msg
    sc = load_scenario(write(tmp_path, "name: a\nturns:\n  - say: hi\nagent: {profile: typical, tts_engine: festival, "
                                       "tts_voice: slt}\n"))
    assert sc.agent.overrides() == {"tts_engine": "festival", "tts_voice": "slt"}


def test_engine_on_a_wav_turn_is_refused(tmp_path):
    msg = error_of(write(tmp_path, "name: a\nturns:\n  - wav: x.wav\n    engine: flite\n"))
    assert "turns[0]" in msg


def test_fingerprint_unchanged_without_engine_and_changed_by_it(tmp_path):
    plain = load_scenario(write(tmp_path, "name: a\nturns:\n  - say: hi\n"))
    stim = plain.model_dump(mode="json", include={"turns", "repetitions", "timeout_s"})
    stim["turns"][0].pop("engine")
    import hashlib
    import json

    assert plain.fingerprint == hashlib.sha256(json.dumps(stim, sort_keys=True).encode()).hexdigest()[:16]
    flite = load_scenario(write(tmp_path, "name: a\nturns:\n  - say: hi\n    engine: flite\n"))
    assert flite.fingerprint != plain.fingerprint


def test_transport_and_provider_keys(tmp_path):
    sc = load_scenario(write(tmp_path, "name: a\ntransport: ws-telephony\nprovider: plivo\nturns:\n  - say: hi\n"))
    assert (sc.transport, sc.provider) == ("ws-telephony", "plivo")
    with pytest.raises(VlhError, match=r"s.yaml:2: transport.*ws-telephony"):
        load_scenario(write(tmp_path, "name: a\ntransport: sip\nturns:\n  - say: hi\n"))
    with pytest.raises(VlhError, match=r"s.yaml:3: provider.*twilio, telnyx, plivo or exotel"):
        load_scenario(write(tmp_path, "name: a\ntransport: ws-telephony\nprovider: vonage\nturns:\n  - say: hi\n"))
    with pytest.raises(VlhError, match=r"s.yaml:2: provider.*goes with transport: ws-telephony"):
        load_scenario(write(tmp_path, "name: a\nprovider: twilio\nturns:\n  - say: hi\n"))
