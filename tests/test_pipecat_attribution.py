"""vlh's stages against a real pipecat 1.14 bot's own latency breakdown (issue #14).

The bot (tests/pipecat_bot.py) runs in its own process: SmallWebRTC, Silero VAD, SpeechTimeoutUserTurnStopStrategy,
scripted STT/LLM/TTS, the RTVI observer, and pipecat's `UserBotLatencyObserver`, whose `on_latency_breakdown` is
written per turn to a JSON-lines file. vlh measures the bot with `vlh run` from RTVI alone and must find pipecat's
figures stage by stage, ±10 ms, with no negative stage. The reference is pipecat's own observer, not vlh's rules.

Pairing of stages (pipecat key → vlh stage), from pipecat 1.14's observers/user_bot_latency_observer.py:
- transcription → stt; sentence_aggregation (first LLMTextFrame → first text + TextAggregationMetricsData) →
  aggregation; speech_synthesis → tts_ttfb;
- llm_inference → llm_ttft + reasoning: pipecat's llm_inference runs from the request to request + LLM ttfb (its
  "LLM chunk" moment) and on to the first LLMTextFrame (both halves merged under one key). Split apart: vlh's
  llm_ttft against the LLM's own ttfb in the breakdown's `ttfb` list, and vlh's reasoning (first token → first
  visible token) against llm_inference − that ttfb;
- turn_detection → turn_detection + llm_dispatch: pipecat's turn detection runs from the transcript to the LLM
  request. Split apart with the breakdown's `user_turn_secs` (VAD stop − stop_secs → UserStoppedSpeakingFrame):
  pipecat's turn end − transcript = user_turn_secs − stop_secs − transcription is vlh's turn_detection (the
  transcript comes first here), and the rest is llm_dispatch (turn end → LLM request);
- endpointing_wait is `stop_secs` by pipecat's definition (VAD stop stamp − stop_secs); vlh measures from the real
  end of speech at the mic, which adds the uplink and the VAD's own detection delay, so pipecat has no figure for
  vlh's endpointing. Its truth here comes from outside both: the bot records the instant its VAD decided
  (`VADUserStoppedSpeakingFrame.timestamp`, on the host's monotonic clock, which the harness shares), and the
  harness knows when the utterance's last sample left it; vlh's endpointing must equal their difference ±10 ms
  (measured +2.8 … +4.3 ms with the VAD messages, the data channel's transit; +6 … +7 ms without them).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from harness.measure.verify import sent_speech_end
from bot_process import bot_instants, start_bot
from hostload import disturbed, remeasured

BOT = Path(__file__).with_name("pipecat_bot.py")
INSTANTS = "pipecat-instants.jsonl"  # the bot's own instants (VAD decisions, …) on the host's monotonic clock
TOL_MS = 10.0
PAIRS = {  # pipecat key -> vlh stages summed
    "transcription": ("stt",),
    "turn_detection": ("turn_detection", "llm_dispatch"),
    "llm_inference": ("llm_ttft", "reasoning"),
    "sentence_aggregation": ("aggregation",),
    "speech_synthesis": ("tts_ttfb",),
}


def pipecat_split(b: dict, contrib: dict, stop_secs: float) -> dict[str, float]:
    """pipecat's figures (ms) for the vlh stages its merged keys hide, from the breakdown's ttfb and user turn."""
    llm = [t["duration_secs"] * 1000 for t in b["ttfb"] if "LLM" in t["processor"]]
    turn_end = b["user_turn_secs"] * 1000 - stop_secs * 1000 - contrib["transcription"]  # transcript -> turn end
    return {"llm_ttft": llm[0], "reasoning": contrib["llm_inference"] - llm[0],
            "turn_detection": turn_end, "llm_dispatch": contrib["turn_detection"] - turn_end}


def _measure(tmp_path: Path, cfg: dict, turns: int = 3):
    breakdown = tmp_path / "pipecat-breakdown.jsonl"
    proc, port = start_bot(BOT, tmp_path, "--breakdown", str(breakdown), "--config", json.dumps(cfg),
                           "--instants", str(tmp_path / INSTANTS), ready_line="pipecat bot ready")
    try:
        out = tmp_path / "run"
        r = subprocess.run([sys.executable, "-m", "harness", "run", "--agent", f"http://127.0.0.1:{port}/api/offer",
                            "--turns", str(turns), "--out", str(out), "--no-report", "--timeout", "10"],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        time.sleep(1.0)  # the last breakdown is written when the bot's turn closes
    finally:
        proc.terminate()
        proc.wait(20)
    rows = pd.read_parquet(out / "turns.parquet").sort_values("turn")
    pc = [json.loads(line) for line in breakdown.read_text().splitlines() if line.strip()]
    stops = [r["mono"] for r in bot_instants(tmp_path / INSTANTS) if r["kind"] == "vad_stop"]
    return rows, pc, stops


def true_endpointing(row: dict, rows: list[dict], stops: list[float]) -> float | None:
    """The endpointing the ear would time, from outside vlh's rules: the bot's own VAD decision (its monotonic
    stamp, the host's clock) − when the utterance's last sample left the harness; the first decision after that
    end and before the next utterance starts."""
    end = sent_speech_end(row)
    nxt = min([r["mic_start_mono"] for r in rows if r["mic_start_mono"] > row["mic_start_mono"]], default=math.inf)
    after = [t for t in stops if end < t < nxt]
    return (min(after) - end) * 1e3 if after else None


def _check(rows: pd.DataFrame, pc: list[dict], cfg: dict, stops: list[float]) -> list[str]:
    assert (rows["status"] == "ok").all(), rows["status"].tolist()
    assert len(pc) == len(rows), (len(pc), len(rows))
    from harness.results.schema import STAGES

    lines = []
    records = rows.to_dict("records")
    for (_, row), b in zip(rows.iterrows(), pc):
        contrib = {}
        for c in b["contributions"]:
            contrib[c["key"]] = contrib.get(c["key"], 0.0) + c["duration_secs"] * 1000
        for st in STAGES:  # no stage is ever negative
            v = row.get(f"{st}_ms")
            assert v is None or pd.isna(v) or v >= 0, (st, v)
        spans = json.loads(row["stages_json"])
        assert all(sp["ms"] >= 0 for sp in spans), spans
        assert sum(sp["ms"] for sp in spans) == pytest.approx(row["ttfa_ms"], abs=0.01)  # exactly, to rounding
        # the VAD end: reported by RTVI, or (vad-user-* messages off) the transcript minus the STT's ttfb
        assert row["vad_end_basis"] == ("reported" if cfg.get("vad_user_speaking_enabled", True) else "stt_ttfb")
        for key, stages in PAIRS.items():
            assert key in contrib, (key, sorted(contrib))
            # the spans on vlh's path that lie inside this interval: its stages, or a span that merges them when a
            # boundary inside was left off (e.g. an out-of-order first visible token: an anomaly, still this interval)
            spans = json.loads(row["stages_json"])
            inside = [sp for sp in spans if sp.get("covers") and set(sp["covers"]) <= set(stages)]
            assert {c for sp in inside for c in sp["covers"]} == set(stages), (key, spans)
            ours = sum(sp["ms"] for sp in inside)
            lines.append(f"turn {row['turn']}: pipecat {key} {contrib[key]:.1f} ms, vlh {'+'.join(stages)} "
                         f"{ours:.1f} ms")
            assert abs(ours - contrib[key]) <= TOL_MS, lines[-1]
        for stage, want in pipecat_split(b, contrib, cfg["stop_secs"]).items():  # one stage each, no merged span
            got = row[f"{stage}_ms"]
            lines.append(f"turn {row['turn']}: {stage}: pipecat (split) {want:.1f} ms, vlh {got:.1f} ms")
            assert not pd.isna(got) and abs(got - want) <= TOL_MS, lines[-1]
        stop_ms = cfg["stop_secs"] * 1000
        assert contrib["endpointing_wait"] == pytest.approx(stop_ms, abs=1.0)
        # the VAD cannot call the speech over before stop_secs of silence; what vlh sees beyond that (Silero's
        # confidence decay over its 32 ms frames, the input chunking, the uplink) has no pipecat figure to check
        lines.append(f"turn {row['turn']}: endpointing: pipecat {contrib['endpointing_wait']:.1f} ms (= stop_secs), "
                     f"vlh {row['endpointing_ms']:.1f} ms (from the end of speech at the mic)")
        assert row["endpointing_ms"] >= stop_ms, lines[-1]
        want = true_endpointing(row.to_dict(), records, stops)
        lines.append(f"turn {row['turn']}: endpointing: bot's VAD decision − speech end sent {want:.1f} ms, "
                     f"vlh {row['endpointing_ms']:.1f} ms ({row['vad_end_basis']})"
                     if want is not None else f"turn {row['turn']}: no VAD decision recorded")
        assert want is not None and abs(row["endpointing_ms"] - want) <= TOL_MS, lines[-1]
    return lines


@pytest.mark.parametrize("cfg,turns", [
    ({"stop_secs": 0.2, "user_speech_timeout": 0.6}, 3),
    ({"stop_secs": 0.4, "user_speech_timeout": 0.3, "stt_secs": 0.08, "tts_secs": 0.09}, 3),
    # pipecat's default: no `vad-user-*` RTVI messages; vlh pins the VAD end back from the transcript by the STT ttfb
    ({"stop_secs": 0.3, "user_speech_timeout": 0.4, "vad_user_speaking_enabled": False}, 2),
], ids=["stop0.2-timeout0.6", "stop0.4-timeout0.3", "vad-messages-off"])
def test_vlh_stages_match_pipecats_own_breakdown(tmp_path, cfg, turns):
    def run(name):
        d = tmp_path / name
        d.mkdir()
        return (d / "run", *_measure(d, cfg, turns))

    # RTVI instants are stamped on arrival: a bot process starved by other jobs on the host sends them late
    # (seen: aggregation +16…22 ms on the first turn at load 3–4); a disturbed run is measured once more
    remeasured(run, lambda res: print("\n".join(_check(res[1], res[2], cfg, res[3]))), "pipecat",
               why=lambda res: disturbed(res[0]))
