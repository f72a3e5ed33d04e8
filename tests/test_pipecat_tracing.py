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
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from bot_process import free_port, start_bot

BOT = Path(__file__).with_name("pipecat_bot.py")
TOL_MS = 5.0
TTFB_OF = {"stt": "ScriptedSTTService", "llm_ttft": "ScriptedLLMService", "tts_ttfb": "ToneTTSService"}
CFG = {"stop_secs": 0.2, "user_speech_timeout": 0.3}


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
    html = (out / "report.html").read_text()
    assert "pipecat says" in html and "the ear heard" in html
