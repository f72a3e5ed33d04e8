"""The reference agent on sound devices (`vlh agent --audio-in DEV --audio-out DEV`): the same pipeline as a WebRTC
call (harness/agent/call.py `Pipeline`), its microphone a sounddevice input and its speaker a sounddevice output.

Both are callback streams stamped with host `time.monotonic()` (harness/devices/stamped.py):
- in: each recorded buffer is fed to the endpointer with its arrival instant, the instant its last sample was
  recorded on the stream's clock (the floor of `stamp − index/rate`: a stamp can be late, never early);
- out: the output callback fills each buffer from the reply queue; the buffer's instant is the callback's stamp
  (`reply_start_sent`, `reply_end_sent`), and the reply's first voiced sample is placed on the stream's clock
  (`audio_first_sent` = the instant sample `index + offset` was handed to the device; `audio_first_callback` keeps
  the raw callback stamp + offset / rate beside it).

Telemetry (`--telemetry-file`): JSON lines, the very messages the WebRTC agent sends on its data channel (vlh events
and RTVI), each with `"_t_host"` (host monotonic instant it was written) added; the first line describes the file
(`{"type": "vlh.telemetry_file", "clock": ...}`). There is no ping/pong on a file: vlh events are stamped on the
host clock (the agent and the harness share the host). A profile that injects a telemetry clock offset/drift
still gets it (the file's first line says so), but nothing can reconcile it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time

import numpy as np

from harness.agent.call import Pipeline, Turn
from harness.agent.config import AgentConfig
from harness.agent.endpoint import PacketRef
from harness.agent.outgoing import FrameInfo, SegmentQueue, to_int16
from harness.audio import SAMPLE_RATE
from harness.errors import VlhError
from harness.devices import pulse
from harness.devices.stamped import DEFAULT_LATENCY, StampedInput, StampedOutput

log = logging.getLogger(__name__)

CALL_ID = "device-1"


class TelemetryFile:
    """A `send` for CallTelemetry: one JSON line per message, `_t_host` and `_call` added (one file may hold several
    calls' lines interleaved: the phone agent's concurrent calls, each `_call` its media stream's id)."""

    def __init__(self, path, clock, call: str = CALL_ID):
        self._call = json.dumps(str(call))
        try:
            self.f = open(path, "a", buffering=1, encoding="utf-8")
        except OSError as exc:
            raise VlhError(f"--telemetry-file {path}: cannot open it for writing ({exc.strerror})") from None
        d = clock.describe()
        skewed = bool(d["offset_ms"] or d["drift_ppm"])
        self.f.write(json.dumps({"type": "vlh.telemetry_file", "version": 1, "pid": os.getpid(), "call": call,
                                 "clock": "injected-skew" if skewed else "host-monotonic",
                                 "telemetry_clock": d, "t_host": time.monotonic()}) + "\n")

    def __call__(self, text: str) -> None:
        self.f.write(f'{text[:-1]},"_t_host":{time.monotonic():.6f},"_call":{self._call}}}\n')

    def close(self) -> None:
        self.f.close()


class DeviceCall(Pipeline):
    """The agent's one call on sound devices: lives from `start()` to `close()`."""

    def __init__(self, *, cfg: AgentConfig, tts, truth, clock, audio_in: str, audio_out: str,
                 telemetry_file=None, latency: float = DEFAULT_LATENCY, start_timeout: float = 5.0):
        super().__init__(cfg=cfg, index=1, pc_id=CALL_ID, tts=tts, truth=truth, clock=clock, out=SegmentQueue())
        self.audio_in, self.audio_out = audio_in, audio_out
        self.start_timeout = start_timeout
        self.inp = StampedInput(audio_in, label="agent_mic", latency=latency, keep_audio=False,
                                on_chunk=self._chunk_cb)
        self.outp = StampedOutput(audio_out, label="agent_speaker", latency=latency, keep_audio=False,
                                  fill=self._fill_cb)
        self.tel_file = TelemetryFile(telemetry_file, clock) if telemetry_file else None
        if self.tel_file:
            self.tel.attach(self.tel_file)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._chunks = 0
        self._buf: tuple[int, float] = (0, 0.0)  # the output buffer being reported (first index, stamp)

    # ---- lifetime
    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        if any(d in pulse.PCMS for d in (self.audio_in, self.audio_out)):
            pulse.ensure_ready()
            pulse.activate()
        streams = (self.inp, self.outp)
        try:
            for s in streams:
                s.open()
            for s in streams:
                s.start()
            deadline = time.monotonic() + self.start_timeout
            while not all(len(s.stamps) > 1 and s.stamps[-1] - s.stamps[0] > 0.1 for s in streams):
                if time.monotonic() > deadline:
                    bad = next(s for s in streams if len(s.stamps) < 2)
                    what = "delivered" if bad is self.inp else "took"
                    raise VlhError(f"sound device {bad.device!r} ({bad.label}) {what} no audio within "
                                   f"{self.start_timeout:.0f} s; is PulseAudio running (`vlh loopback status`)?")
                await asyncio.sleep(0.01)
        except BaseException:
            for s in streams:
                s.close()
            raise
        self._prepare_replies()
        self.truth.record({"kind": "call", "event": "start", "call": self.pc_id, "call_index": self.index,
                           "t": time.monotonic(), "transport": "device", "audio_in": self.audio_in,
                           "audio_out": self.audio_out, "telemetry_clock": self.clock.describe(),
                           "config": self.cfg.model_dump()})

    async def _release_transport(self) -> dict:
        for s in (self.inp, self.outp):
            await asyncio.to_thread(s.close)
        return {"audio_in_stats": _brief(self.inp.stats()), "audio_out_stats": _brief(self.outp.stats())}

    def _closed(self) -> None:
        if self.tel_file:
            self.tel_file.close()
        super()._closed()

    # ---- incoming audio (callback thread → loop)
    def _chunk_cb(self, chunk: np.ndarray, start: int, stamp: float) -> None:
        if self.loop is not None and not self.closed:
            self.loop.call_soon_threadsafe(self._on_chunk, chunk, start)

    def _on_chunk(self, chunk: np.ndarray, start: int) -> None:
        if self.closed:
            return
        self._chunks += 1
        seq = self._chunks
        clock = self.inp
        end = start + len(chunk)
        arrival = clock.live_time_of(end)  # its last sample was recorded then
        self.last_rx = arrival
        self._heard(to_int16(chunk), PacketRef(arrival, seq, start),
                    lambda i: (clock.live_time_of(start + i), seq, start, i))

    # ---- outgoing audio (callback thread → loop)
    def _fill_cb(self, out: np.ndarray, n: int, stamp: float) -> None:
        pcm = np.zeros(len(out), np.int16)
        info = FrameInfo(index=n, sched=stamp, produced=stamp)
        self.out.fill(pcm, info)
        if info.parts:
            out += pcm.astype(np.float32) / 32768.0
        if self.loop is not None and not self.closed and (info.parts or self.stopping):
            self.loop.call_soon_threadsafe(self._written, info, n, stamp)

    def _written(self, info: FrameInfo, n: int, stamp: float) -> None:
        if self.closed:
            return
        self._buf = (n, stamp)
        self._handed_over(info, stamp, lambda off: self.outp.live_time_of(n + off))

    def _mark(self, turn: Turn, what: str, part) -> None:
        n, stamp = self._buf
        if what == "start":
            turn.reply["start_index"] = n + part.offset
        elif what == "first":
            off = part.first_voiced_offset
            turn.reply.update(first_index=n + off, first_callback=stamp + off / SAMPLE_RATE)
        else:
            turn.reply["last_index"] = n + part.offset + part.count

    def _stopped(self, turn: Turn) -> None:
        n, _stamp = self._buf
        turn.barge_in["audio_stopped_index"] = n  # the first output buffer without the interrupted reply's audio

    def _transport_record(self, turn: Turn, rec: dict) -> None:
        r = turn.reply
        rec.update({
            "transport": "device", "audio_in": self.audio_in, "audio_out": self.audio_out,
            # the true end of the user's speech as the agent received it: its last audible sample's recording instant
            "user_speech_end_heard": rec["last_audible_mic_arrival"],
            "audio_first_sent_index": r.get("first_index"), "audio_first_callback": r.get("first_callback"),
            "reply_start_index": r.get("start_index"), "reply_end_index": r.get("last_index"),
        })


def _brief(stats: dict) -> dict:
    return {k: stats.get(k) for k in ("device", "frames", "flags", "gaps", "jumps_back", "drift_ppm",
                                      "lateness_ms", "realtime")}


async def serve_devices(cfg: AgentConfig, *, audio_in: str, audio_out: str, truth_log=None, telemetry_file=None,
                        on_ready=None, stop: asyncio.Event | None = None, tts_cache_dir=None) -> int:
    """Run the agent on sound devices until `stop` is set (SIGINT/SIGTERM in the CLI)."""
    from harness.agent.llm import sentences
    from harness.agent.self_report import TelemetryClock
    from harness.agent.truth import TruthLog
    from harness.agent.tts import Tts

    knobs = [k for k in ("net_delay_ms", "net_jitter_ms", "net_loss", "net_stall_ms", "in_delay_ms", "in_jitter_ms",
                         "in_loss")
             if getattr(cfg, k)]
    if knobs:
        log.warning("on sound devices there is no network: %s do not apply", ", ".join(knobs))
    truth = TruthLog(truth_log, None, memory=False)
    clock = TelemetryClock(cfg.clock_offset_ms, cfg.clock_drift_ppm)
    tts = Tts(cfg.tts_voice, cfg.tts_rate, cache_dir=tts_cache_dir, engine=cfg.tts_engine)
    call = None
    try:
        await asyncio.gather(*(tts.prepare(s) for text in cfg.responses for s in sentences(text)))
        call = DeviceCall(cfg=cfg, tts=tts, truth=truth, clock=clock, audio_in=audio_in, audio_out=audio_out,
                          telemetry_file=telemetry_file)
        await call.start()
        if on_ready:
            on_ready()
        print(f"vlh agent: listening on sound device {audio_in!r}, speaking on {audio_out!r}; Ctrl-C to stop",
              flush=True)
        stop = stop or asyncio.Event()
        await stop.wait()
    finally:
        if call is not None:
            await call.close("agent stopped")
        tts.close()
        truth.close()
    return 0
