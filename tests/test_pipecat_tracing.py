"""`vlh run --otlp-listen` against a real pipecat 1.14 bot with tracing on (issue #18).

The bot (tests/pipecat_bot.py --otlp-endpoint) runs in its own process: SmallWebRTC, Silero VAD, scripted services
built on pipecat's STTService / LLMService / TTSService with pipecat's own tracing decorators, `enable_tracing=True`,
`setup_tracing` with the OTLP/HTTP exporter pointed at vlh's receiver, the conversation id = the WebRTC pc_id. vlh
measures it with the spans as its only source of the agent's stages. The reference is what pipecat itself reported
in the bot process, not the spans: the `TTFBMetricsData` of each service (MetricsFrames, collected by pipecat's
`UserBotLatencyObserver` into its breakdown) and the latency its `on_latency_measured` gave, per turn.

Per turn: vlh's `stt` = the STT service's TTFB (from pipecat's end-of-speech estimate, VAD stop − stop_secs, to the
final transcript), `llm_ttft` = the LLM's TTFB, `tts_ttfb` = the TTS's TTFB, each from OTLP, `reconciled`, ±5 ms;
`framework_v2v_ms` = pipecat's user→bot latency ±5 ms; and the report says "pipecat says … the ear heard …".
The stage durations equal the spans' `metrics.ttfb` by construction; what is measured a second time is where vlh
put the instants on the host clock: each against the bot's own `time.monotonic()` stamp of the same moment
(`--instants`; one machine, one monotonic clock), ±5 ms.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from harness.measure.verify import sent_speech_end
from bot_process import bot_instants, free_port, start_bot

BOT = Path(__file__).with_name("pipecat_bot.py")
TOL_MS = 5.0
TTFB_OF = {"stt": "ScriptedSTTService", "llm_ttft": "ScriptedLLMService", "tts_ttfb": "ToneTTSService"}
CFG = {"stop_secs": 0.2, "user_speech_timeout": 0.3}
PLACED = {  # the bot's own instant (pipecat_bot.instant) -> vlh's event from the spans
    "stt_final": "stt_final", "llm_request": "llm_request", "llm_first_token": "llm_first_token",
    "tts_request": "tts_request", "tts_first_audio": "tts_first_audio"}


def _ttfb_ms(record: dict, processor: str) -> float:
    """The service's own TTFBMetricsData this turn (the last one: a service reports one per request)."""
    vals = [t["duration_secs"] * 1e3 for t in record["ttfb"] if t["processor"] == processor]
    assert vals, (processor, record["ttfb"])
    return vals[-1]


def test_pipecat_spans_give_every_stage_and_pipecats_own_latency(tmp_path):
    otlp_port = free_port()
    breakdown = tmp_path / "pipecat-breakdown.jsonl"
    # the SDK's BatchSpanProcessor sends every OTEL_BSP_SCHEDULE_DELAY ms (5000 by default): 200 keeps the test short
    proc, port = start_bot(BOT, tmp_path, "--breakdown", str(breakdown), "--config", json.dumps(CFG),
                           "--instants", str(tmp_path / "instants.jsonl"),
                           "--otlp-endpoint", f"http://127.0.0.1:{otlp_port}/v1/traces",
                           ready_line="pipecat bot ready", env={"OTEL_BSP_SCHEDULE_DELAY": "200"})
    out = tmp_path / "run"
    try:
        t0 = time.monotonic()
        r = subprocess.run([sys.executable, "-m", "harness", "run", "--agent", f"http://127.0.0.1:{port}/api/offer",
                            "--turns", "3", "--out", str(out), "--timeout", "10",
                            "--otlp-listen", f"127.0.0.1:{otlp_port}"],
                           capture_output=True, text=True, timeout=120)
        run_s = time.monotonic() - t0
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    finally:
        proc.terminate()
        proc.wait(20)
    meta = json.loads((out / "run.json").read_text())
    assert meta["otlp"]["frameworks"] == ["pipecat"], meta["otlp"]
    assert meta["otlp"]["same_host"]
    assert meta["telemetry"]["otlp_rejected"] == 0 and meta["telemetry"]["otlp_spans"] > 0, meta["telemetry"]
    rows = pd.read_parquet(out / "turns.parquet").sort_values("turn")
    # the conversation was matched by its id, the call's pc_id
    call = meta["otlp"]["calls"][0]
    assert len(call["conversations"]) == 1 and rows["agent_call_id"].iloc[0] in call["conversations"][0], call
    pc = [json.loads(line) for line in breakdown.read_text().splitlines() if line.strip()]
    assert list(rows["status"]) == ["ok"] * 3, rows["status"].tolist()
    assert len(pc) == len(rows), (len(pc), len(rows))

    table = []  # (turn, stage, pipecat's figure, vlh's from OTLP), ms
    for (_, row), b in zip(rows.iterrows(), pc):
        for stage, processor in TTFB_OF.items():
            assert row[f"{stage}_source"] == "reconciled", (stage, row[f"{stage}_source"])
            table.append((int(row["turn"]), stage, _ttfb_ms(b, processor), float(row[f"{stage}_ms"])))
        table.append((int(row["turn"]), "framework_v2v", b["latency_secs"] * 1e3, float(row["framework_v2v_ms"])))
    print("\nturn  stage          pipecat ms   vlh (OTLP) ms   error ms")
    for turn, stage, theirs, ours in table:
        print(f"{turn:>4}  {stage:<13} {theirs:>10.2f}   {ours:>13.2f}   {ours - theirs:>+8.3f}")
    print(f"vlh run took {run_s:.1f} s; clock: {call['method']}, ±{call['uncertainty_ms']} ms")
    for turn, stage, theirs, ours in table:
        assert abs(ours - theirs) <= TOL_MS, (turn, stage, theirs, ours)
    # where vlh put the spans' instants on the host clock, against the bot's own stamps of the same moments (its
    # services log time.monotonic(), the host's clock, as they act): independent of the spans' durations
    events = pd.read_parquet(out / "events.parquet")
    mine = bot_instants(tmp_path / "instants.jsonl")
    records = rows.to_dict("records")
    placed = []  # (turn, event, vlh − the bot's own stamp, ms)
    for i, row in enumerate(records):
        lo = sent_speech_end(row)
        hi = records[i + 1]["mic_start_mono"] if i + 1 < len(records) else float("inf")
        ev = events[(events["call"] == row["call"]) & (events["turn"] == row["turn"])]
        for kind, name in PLACED.items():
            theirs = [r["mono"] for r in mine if r["kind"] == kind and lo < r["mono"] < hi]
            ours = ev[(ev["name"] == name) & (ev["source"] == "reconciled")]["t_mono"]
            assert theirs and len(ours) == 1, (row["turn"], kind, theirs, ev[["name", "source"]].values.tolist())
            placed.append((int(row["turn"]), name, (ours.iloc[0] - theirs[0]) * 1e3))
    print("turn  event (reconciled from OTLP)   vlh − the bot's own stamp, ms")
    for turn, name, err in placed:
        print(f"{turn:>4}  {name:<30} {err:>+8.3f}")
    for turn, name, err in placed:
        assert abs(err) <= TOL_MS, (turn, name, err)
    html = (out / "report.html").read_text()
    assert "pipecat says" in html and "the ear heard" in html
