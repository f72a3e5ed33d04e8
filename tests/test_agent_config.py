"""Agent configuration: knobs, profiles, overrides, and one clear error naming the bad key."""

from __future__ import annotations

import re

import pytest

from harness.agent.config import AgentConfig, build_config, knob_names, validate_config
from harness.agent.profiles import builtin_profiles, load_profile
from harness.cli import build_parser, main
from harness.errors import VlhError


def test_defaults_are_the_documented_ones():
    c = AgentConfig()
    assert c.endpoint_hangover_ms == 300 and c.vad_frame_ms == 20
    assert c.telemetry == ["vlh", "rtvi"]
    assert c.net_delay_ms == 0 and c.net_loss == 0 and c.clock_offset_ms == 0


def test_every_builtin_profile_is_valid_and_described():
    names = builtin_profiles()
    assert {"fast", "typical", "reasoning", "bad-network", "skewed-clock"} <= set(names)
    for name, desc in names.items():
        assert desc, name
        build_config(name)


def test_profiles_carry_their_budgets():
    assert build_config("reasoning").reasoning_ms == 800
    bad = build_config("bad-network")
    assert (bad.net_delay_ms, bad.net_jitter_ms, bad.net_loss) == (40, 15, 0.02)
    skew = build_config("skewed-clock")
    assert (skew.clock_offset_ms, skew.clock_drift_ppm) == (1500, 100)
    typ = build_config("typical")  # the Pipecat primer: endpointing + STT 300 ms, LLM 350 ms, TTS 120 ms
    assert typ.endpoint_hangover_ms + typ.stt_delay_ms == 300
    assert (typ.llm_ttft_ms, typ.tts_ttfb_ms) == (350, 120)


def test_overrides_win_over_the_profile_and_none_is_ignored():
    c = build_config("bad-network", {"net_loss": 0.1, "net_delay_ms": None})
    assert c.net_loss == 0.1 and c.net_delay_ms == 40


def test_telemetry_accepts_comma_lists_and_none():
    assert validate_config({"telemetry": "vlh"}).telemetry == ["vlh"]
    assert validate_config({"telemetry": "rtvi,vlh"}).telemetry == ["rtvi", "vlh"]
    assert validate_config({"telemetry": "none"}).telemetry == []
    with pytest.raises(VlhError, match="telemetry"):
        validate_config({"telemetry": "vlh,sip"})


@pytest.mark.parametrize("data, key", [
    ({"net_loss": 1.5}, "net_loss"),
    ({"endpoint_hangover_ms": -1}, "endpoint_hangover_ms"),
    ({"vad_frame_ms": 25}, "vad_frame_ms"),
    ({"vad_aggressiveness": 4}, "vad_aggressiveness"),
    ({"net_jitter_dist": "pareto"}, "net_jitter_dist"),
    ({"responses": []}, "responses"),
    ({"llm_ttft_ms": "fast"}, "llm_ttft_ms"),
    ({"stt_dealy_ms": 10}, "stt_dealy_ms"),
])
def test_invalid_values_name_the_key(data, key):
    with pytest.raises(VlhError) as e:
        validate_config(data, "agent options")
    msg = str(e.value)
    assert key in msg and "\n" not in msg


def test_profile_errors_name_the_file_and_key(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("description: x\nnet_loss: 3\n")
    with pytest.raises(VlhError, match=r"p\.yaml.*net_loss"):
        build_config(str(p))
    p.write_text("net_loss: [0.1\n")
    with pytest.raises(VlhError, match=r"p\.yaml line \d+: not valid YAML"):
        build_config(str(p))
    p.write_text("- a\n- b\n")
    with pytest.raises(VlhError, match="mapping"):
        load_profile(str(p))
    with pytest.raises(VlhError, match="does not exist"):
        build_config(str(tmp_path / "missing.yaml"))
    with pytest.raises(VlhError, match="built-in profiles: .*typical"):
        build_config("no-such-profile")


def _agent_help() -> str:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices["agent"].format_help()


def test_help_documents_every_knob_with_its_unit():
    text = " ".join(_agent_help().split())
    for name in knob_names():
        flag = {"transcripts": "--transcript", "responses": "--response"}.get(name, "--" + name.replace("_", "-"))
        assert flag in text, flag
    for name, field in AgentConfig.model_fields.items():
        d = field.description or ""
        if field.annotation in (float, int, int | None, float | None) and name not in ("seed",):
            assert re.search(r"\b(ms|s|ppm|fraction|words)\b|0 \(lenient\)", d), (name, d)
    for prof in builtin_profiles():
        assert prof in text


def test_cli_reports_bad_values_in_one_line(capsys):
    assert main(["agent", "--net-loss", "2", "--print-config"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vlh: error:") and "net_loss" in err[0]
    assert main(["agent", "--profile", "nope", "--print-config"]) == 2
    assert "nope" in capsys.readouterr().err


def test_cli_print_config_merges_profile_and_flags(capsys):
    import json

    assert main(["agent", "--profile", "typical", "--llm-ttft-ms", "500", "--response", "A.", "--response", "B.",
                 "--telemetry", "rtvi", "--barge-in", "false", "--print-config"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["llm_ttft_ms"] == 500 and cfg["tts_ttfb_ms"] == 120
    assert cfg["responses"] == ["A.", "B."] and cfg["telemetry"] == ["rtvi"] and cfg["barge_in"] is False
