"""One call of the reference agent: its endpointing, its turns and their ground truth (`Pipeline`), carried by a
WebRTC peer connection (`Call`) or by sound devices (harness/agent/device.py `DeviceCall`).

The pipeline is transport-agnostic: a transport feeds it received audio (`Pipeline._heard`: 48 kHz mono int16 with
an arrival reference), takes the reply audio from `Pipeline.out` (a SegmentQueue, filled into whatever buffers the
transport hands over) and reports each buffer it handed over (`Pipeline._handed_over`: its parts and the true
instant the buffer — and the reply's first voiced sample in it — left the agent).

Pipeline per turn (all instants host `time.monotonic()`; each stage waits until an absolute target):
endpoint (hangover after the last voiced packet's arrival) → +stt_delay → stt_final → +llm_dispatch →
llm_request → +ttft → llm_first_token → +reasoning → llm_first_visible_token → sentence aggregation →
tts_request → +tts_ttfb → tts_first_audio (queued on the paced track) → audio_first_sent (the send time of the
packet holding the reply's first voiced sample) → injected network delay → the client.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.codecs.opus import OpusDecoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtp import RtpPacket
from aiortc.sdp import SessionDescription

from harness.agent.audible import AudibleTracker
from harness.agent.config import AgentConfig
from harness.agent.endpoint import Endpointer, PacketRef
from harness.agent.impair import Impairment, ImpairmentSpec, rtp_header, wrap_incoming, wrap_outgoing
from harness.agent.llm import SentenceAggregator, schedule, sentences, stream
from harness.agent.outgoing import SAMPLE_RATE, FrameInfo, ReplyTrack, Segment, SegmentQueue, Stutter
from harness.agent.timing import sleep_until
from harness.agent.self_report import LLM_MODEL, LLM_PROCESSOR, STT_PROCESSOR, TTS_PROCESSOR, CallTelemetry

log = logging.getLogger(__name__)

AUDIBLE = int(32768 * 10 ** (-50 / 20))  # |sample| above −50 dBFS counts as audible (for last_audible_mic_*)

STAGE_EVENTS = ("user_speech_end_detected", "stt_final", "llm_request", "llm_first_token",
                "llm_first_visible_token", "tts_request", "tts_first_audio", "audio_first_sent")


class AgentWorkers:
    """The agent process's workers for per-turn CPU work (`turn_cpu_ms`): at most `n` turns work at once, the others
    queue first come, first served — an M/D/n server, so load has a knee at n / turn_cpu_ms turns per second. The
    work is modelled (held, not burnt) so the harness measuring on the same host keeps its CPU."""

    def __init__(self, n: int):
        self.n = n
        self.sem = asyncio.Semaphore(n) if n > 0 else None

    async def work(self, seconds: float) -> float:
        """Do one turn's work; returns how long (ms) it waited for a free worker."""
        t0 = time.monotonic()
        if self.sem is None:
            await asyncio.sleep(seconds)
            return 0.0
        async with self.sem:
            waited = (time.monotonic() - t0) * 1000.0
            await asyncio.sleep(seconds)
        return waited


_WORKERS: dict[tuple[int, int], AgentWorkers] = {}


def agent_workers(n: int) -> AgentWorkers:
    """The one pool of `n` workers of this agent (per event loop: an agent is one loop)."""
    key = (id(asyncio.get_running_loop()), n)
    if key not in _WORKERS:
        _WORKERS[key] = AgentWorkers(n)
    return _WORKERS[key]


class OfferError(Exception):
    """The client's offer cannot be served (answered with HTTP 400)."""


def check_offer(sdp: str) -> None:
    """Reject offers without an audio m-line or without Opus 48 kHz, before touching aiortc."""
    try:
        desc = SessionDescription.parse(sdp)
    except Exception as exc:
        raise OfferError(f"the offer's SDP cannot be parsed ({type(exc).__name__}: {exc}); "
                         "send the SDP text of an RTCPeerConnection offer") from None
    if not desc.media:
        raise OfferError("the offer's SDP has no media section (is it an SDP offer?)")
    audio = [m for m in desc.media if m.kind == "audio"]
    if not audio:
        raise OfferError("the offer has no audio m-line; vlh agent needs one sendrecv audio transceiver")
    codecs = [f"{c.mimeType}/{c.clockRate}" for c in audio[0].rtp.codecs]
    if not any(c.lower() == "audio/opus/48000" for c in codecs):
        raise OfferError(f"the offer's audio has no Opus 48 kHz codec (offered: {', '.join(codecs) or 'none'}); "
                         "vlh agent speaks Opus only")


@dataclass
class Turn:
    no: int
    first: PacketRef
    confirmed: float
    transcript: str = ""
    reply_text: str = ""
    last: PacketRef | None = None
    last_audible: tuple | None = None  # (arrival, seq, rtp_ts, sample offset in the packet's decoded audio)
    t: dict = field(default_factory=dict)  # stage name → host instant
    status: str = "open"
    error: str = ""
    reply: dict = field(default_factory=dict)
    barge_in: dict | None = None
    stutter: Stutter | None = None
    task: asyncio.Task | None = None
    tts_tasks: list = field(default_factory=list)
    stop_at: float | None = None
    late: dict = field(default_factory=dict)  # stage → ms the agent was behind its own schedule
    done: bool = False
    sentences: list = field(default_factory=list)


class Pipeline:
    """One call's turns, whatever carries its audio. A subclass provides the transport (see the module docstring):
    it calls `_heard` with received audio, hands `self.out`'s audio to its peer and calls `_handed_over` for each
    buffer, fills `_mark` with its own identifiers of a buffer, and adds its fields to the truth record
    (`_transport_record`)."""

    def __init__(self, *, cfg: AgentConfig, index: int, pc_id: str, tts, truth, clock, out: SegmentQueue,
                 on_closed=None):
        self.cfg = cfg
        self.index = index
        self.pc_id = pc_id
        self.tts = tts
        self.truth = truth
        self.clock = clock
        self.on_closed = on_closed
        self.out = out
        self.tel = CallTelemetry(clock, list(cfg.telemetry))
        self.endpointer = Endpointer(
            aggressiveness=cfg.vad_aggressiveness, frame_ms=cfg.vad_frame_ms,
            speech_start_ms=cfg.speech_start_ms, hangover_ms=cfg.endpoint_hangover_ms,
            on_start=self._on_speech_start, on_end=self._on_speech_end)
        self.turn_no = 0
        self.turns: dict[int, Turn] = {}
        self.current: Turn | None = None  # the user turn being spoken
        self.active: list[Turn] = []  # turns whose reply is not finished
        self.stopping: list[Turn] = []
        self.t_created = time.monotonic()
        self.last_rx = self.t_created
        self._last_audible: tuple | None = None
        self.closed = False
        self.close_reason = ""

    def _prepare_replies(self) -> None:
        for text in self.cfg.responses:  # synthesis ahead of time: the TTS wait is then the configured one
            for s in sentences(text):
                self.tts.prepare(s, self.cfg.tts_voice, self.cfg.tts_rate)

    # ------------------------------------------------------------------ incoming audio
    def _heard(self, mono: np.ndarray, ref: PacketRef, audible_ref=None) -> tuple[bool, int]:
        """Received audio (48 kHz mono int16) that arrived at `ref.arrival`. `audible_ref(i)`: the truth log's
        (arrival, seq, rtp_ts, offset) tuple for the chunk's last audible sample i. Returns (voiced, peak)."""
        level = np.abs(mono.astype(np.int32))
        peak = int(level.max()) if len(level) else 0
        if peak > AUDIBLE:
            i = int(np.flatnonzero(level > AUDIBLE)[-1])
            self._last_audible = (audible_ref(i) if audible_ref else (ref.arrival, ref.seq, ref.rtp_ts, i))
        before = self.endpointer.voiced_frames
        self.endpointer.feed(mono, ref)
        return self.endpointer.voiced_frames > before, peak

    # ------------------------------------------------------------------ turns
    def _on_speech_start(self, first: PacketRef, t_confirmed: float) -> None:
        self.turn_no += 1
        turn = Turn(no=self.turn_no, first=first, confirmed=t_confirmed)
        self.turns[turn.no] = turn
        self.current = turn
        self.tel.rtvi_msg("user-started-speaking")
        if self.cfg.barge_in:
            for other in list(self.active):
                self._interrupt(other, turn, t_confirmed)

    def _on_speech_end(self, first: PacketRef, last: PacketRef, t_detected: float) -> None:
        turn = self.current
        self.current = None
        if turn is None or self.closed:
            return
        turn.last = last
        turn.last_audible = self._last_audible
        turn.t["user_speech_end_detected"] = t_detected
        turn.late["user_speech_end_detected"] = (t_detected - last.arrival - cfg_hang(self.cfg)) * 1000.0
        self.tel.event("user_speech_end_detected", t_detected, turn.no)
        self.tel.rtvi_msg("user-stopped-speaking")
        cfg = self.cfg
        turn.transcript = cfg.transcripts[(turn.no - 1) % len(cfg.transcripts)]
        turn.reply_text = cfg.responses[(turn.no - 1) % len(cfg.responses)]
        turn.sentences = sentences(turn.reply_text)
        turn.stutter = Stutter(cfg.stutter_gap_ms, cfg.stutter_every_ms)
        turn.status = "running"
        self.active.append(turn)
        turn.task = asyncio.ensure_future(self._run_turn(turn))

    def _stamp(self, turn: Turn, name: str, t: float | None = None, target: float | None = None) -> float:
        t = time.monotonic() if t is None else t
        turn.t[name] = t
        if target is not None:
            turn.late[name] = (t - target) * 1000.0
        self.tel.event(name, t, turn.no)
        return t

    async def _run_turn(self, turn: Turn) -> None:
        cfg = self.cfg
        until = sleep_until
        try:
            t_end = turn.t["user_speech_end_detected"]
            target = t_end + cfg.stt_delay_ms / 1000
            t = self._stamp(turn, "stt_final", await until(target), target)
            self.tel.rtvi_transcription(turn.transcript)
            self.tel.rtvi_ttfb(STT_PROCESSOR, t - t_end)
            if cfg.turn_cpu_ms > 0:  # the agent's shared workers: wait for one, then hold it for the turn's work
                turn.reply["cpu_queue_wait_ms"] = await agent_workers(cfg.workers_per_agent).work(cfg.turn_cpu_ms / 1000)
                t = time.monotonic()
            target = t + cfg.llm_dispatch_ms / 1000
            t_req = self._stamp(turn, "llm_request", await until(target), target)
            self.tel.rtvi_msg("bot-llm-started")
            chunks = schedule(turn.reply_text, ttft_ms=cfg.llm_ttft_ms, reasoning_ms=cfg.reasoning_ms,
                              token_interval_ms=cfg.token_interval_ms, tokens_per_chunk=cfg.tokens_per_chunk)
            agg = SentenceAggregator()
            k = 0
            async for chunk, t_c in stream(chunks, t_req):
                if "llm_first_token" not in turn.t:
                    self._stamp(turn, "llm_first_token", t_c, t_req + chunk.at_s)
                    self.tel.rtvi_ttfb(LLM_PROCESSOR, t_c - t_req, LLM_MODEL)
                if not chunk.visible:
                    continue
                if "llm_first_visible_token" not in turn.t:
                    self._stamp(turn, "llm_first_visible_token", t_c, t_req + chunk.at_s)
                self.tel.rtvi_msg("bot-llm-text", {"text": chunk.text})
                for s in agg.add(chunk.text):
                    self._start_tts(turn, k, s, time.monotonic())
                    k += 1
            for s in agg.flush():
                self._start_tts(turn, k, s, time.monotonic())
                k += 1
            self.tel.rtvi_msg("bot-llm-stopped")
            if turn.tts_tasks:
                await turn.tts_tasks[-1]
            self.tel.rtvi_msg("bot-tts-stopped")
            if not turn.tts_tasks:
                self._finish(turn, "ok")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("call %s turn %d failed", self.pc_id, turn.no)
            self._finish(turn, "error", f"{type(exc).__name__}: {exc}")

    def _start_tts(self, turn: Turn, k: int, sentence: str, t_req: float) -> None:
        if k == 0:
            self._stamp(turn, "tts_request", t_req)
            self.tel.rtvi_msg("bot-tts-started")
        self.tel.rtvi_msg("bot-tts-text", {"text": sentence})
        fut = self.tts.prepare(sentence, self.cfg.tts_voice, self.cfg.tts_rate)
        prev = turn.tts_tasks[-1] if turn.tts_tasks else None
        last = k == len(turn.sentences) - 1
        turn.tts_tasks.append(asyncio.ensure_future(self._tts(turn, k, fut, t_req, prev, last)))

    async def _tts(self, turn: Turn, k: int, fut, t_req: float, prev, last: bool) -> None:
        target = t_req + self.cfg.tts_ttfb_ms / 1000
        await sleep_until(target)
        speech = await fut
        if prev is not None:
            await prev
        t = time.monotonic()
        pcm, fv = speech.pcm, None
        if k == 0:
            lead = int(round(self.cfg.reply_leading_silence_ms * SAMPLE_RATE / 1000))
            pcm = np.concatenate([np.zeros(lead, dtype=np.int16), pcm])
            fv = lead + speech.first_voiced
            turn.reply["leading_silence_samples"] = lead
        pcm, fv = turn.stutter.apply(pcm, fv)
        if k == 0:
            self._stamp(turn, "tts_first_audio", t, target)
            self.tel.rtvi_ttfb(TTS_PROCESSOR, t - turn.t["tts_request"])
            turn.reply["first_voiced_sample"] = fv
        turn.reply["samples"] = turn.reply.get("samples", 0) + len(pcm)
        self.out.enqueue(Segment(turn=turn.no, pcm=pcm, first_voiced=fv, first=(k == 0), last=last))

    def _interrupt(self, turn: Turn, by: Turn, t: float) -> None:
        playing = "reply_start_sent" in turn.t
        turn.barge_in = {"by_turn": by.no, "user_speech_start_arrival": by.first.arrival,
                         "detected": t, "while": "playing" if playing else "thinking"}
        for task in [turn.task, *turn.tts_tasks]:
            if task is not None and not task.done():
                task.cancel()
        cut = self.out.clear(turn.no)
        turn.barge_in["samples_cut"] = cut
        turn.stop_at = time.monotonic()
        self.tel.rtvi_msg("bot-interrupted")
        if playing:
            self.stopping.append(turn)  # finished when the first packet without its audio is sent
        else:
            self._finish(turn, "interrupted")

    def _finish(self, turn: Turn, status: str, error: str = "") -> None:
        if turn.done:
            return
        turn.done = True
        turn.status = status if turn.barge_in is None or status != "ok" else "interrupted"
        turn.error = error
        if turn in self.active:
            self.active.remove(turn)
        if turn in self.stopping:
            self.stopping.remove(turn)
        self._record_turn(turn)

    def _record_turn(self, turn: Turn) -> None:
        """Write the turn's truth record (a transport may hold it until its own instants are known)."""
        self.truth.record(self._turn_record(turn))

    # ------------------------------------------------------------------ outgoing audio
    def _handed_over(self, info: FrameInfo, t_send: float, t_first_voiced=None) -> None:
        """A buffer of reply audio (`info.parts`) left the agent at `t_send`; `t_first_voiced(offset)`: the true
        instant of the sample at `offset` in it (default: `t_send`, the buffer's instant)."""
        in_frame = set()
        for part in info.parts:
            in_frame.add(part.turn)
            turn = self.turns.get(part.turn)
            if turn is None or turn.done:
                continue
            if part.reply_start:
                turn.t["reply_start_sent"] = t_send
                self._mark(turn, "start", part)
                self.tel.rtvi_msg("bot-started-speaking")
            if part.first_voiced_offset is not None:
                off = part.first_voiced_offset
                self._stamp(turn, "audio_first_sent", t_send if t_first_voiced is None else t_first_voiced(off))
                turn.reply["first_voiced_offset"] = off
                self._mark(turn, "first", part)
            turn.t["reply_last_sent"] = t_send
            self._mark(turn, "last", part)
            if part.reply_end:
                turn.t["reply_end_sent"] = t_send
                self.tel.rtvi_msg("bot-stopped-speaking")
                self._finish(turn, "ok")
        for turn in list(self.stopping):
            if turn.no not in in_frame and info.produced > turn.stop_at:
                turn.barge_in["audio_stopped_sent"] = t_send
                self._stopped(turn)  # the stop buffer: the first one without this reply's audio
                turn.t["reply_end_sent"] = turn.t.get("reply_last_sent")
                self.tel.rtvi_msg("bot-stopped-speaking")
                self._finish(turn, "interrupted")

    def _mark(self, turn: Turn, what: str, part) -> None:
        """The transport's identifiers of the buffer holding the reply's start / first voiced sample / latest
        audio (`what`), into `turn.reply` for the truth record."""

    def _stopped(self, turn: Turn) -> None:
        """A barge-in: the transport's identifiers of the stop buffer (the first without the interrupted reply's
        audio), into `turn.barge_in` for the truth record."""

    # ------------------------------------------------------------------ records
    def _turn_record(self, turn: Turn) -> dict:
        t = turn.t
        r = turn.reply
        rec = {
            "kind": "turn", "call": self.pc_id, "call_index": self.index, "turn": turn.no,
            "status": turn.status, "error": turn.error,
            "transcript": turn.transcript, "reply_text": turn.reply_text, "sentences": turn.sentences,
            "user_speech_start_arrival": turn.first.arrival, "user_speech_start_seq": turn.first.seq,
            "user_speech_start_rtp_ts": turn.first.rtp_ts, "user_speech_start_confirmed": turn.confirmed,
            "last_voiced_mic_arrival": turn.last.arrival if turn.last else None,
            "last_voiced_mic_seq": turn.last.seq if turn.last else None,
            "last_voiced_mic_rtp_ts": turn.last.rtp_ts if turn.last else None,
        }
        la = turn.last_audible or (None, None, None, None)
        rec.update({"last_audible_mic_arrival": la[0], "last_audible_mic_seq": la[1],
                    "last_audible_mic_rtp_ts": la[2], "last_audible_mic_offset": la[3]})
        for name in STAGE_EVENTS:
            rec[name] = t.get(name)
        rec.update({
            "first_voiced_offset_samples": r.get("first_voiced_offset"),
            "reply_first_voiced_sample": r.get("first_voiced_sample"),
            "reply_leading_silence_samples": r.get("leading_silence_samples"),
            "reply_samples": r.get("samples"),
            "reply_start_sent": t.get("reply_start_sent"),
            "reply_end_sent": t.get("reply_end_sent"),
            "stutter_gaps": turn.stutter.gaps if turn.stutter else [],
            "barge_in": turn.barge_in,
            "cpu_queue_wait_ms": r.get("cpu_queue_wait_ms"),
        })
        self._transport_record(turn, rec)
        rec["durations_ms"] = _durations(rec)
        rec["lateness_ms"] = dict(turn.late)
        rec["telemetry_clock"] = self.clock.describe()
        rec["config"] = self.cfg.model_dump()
        return rec

    def _transport_record(self, turn: Turn, rec: dict) -> None:
        """Add the transport's own fields to a turn's truth record."""

    async def close(self, reason: str = "closed") -> None:
        """End the call once: the transport stops its media (`_stop_media`), every unfinished turn is recorded as
        call_closed, the transport releases its peer (`_release_transport`, which returns its end-of-call counters)
        and the call's `end` record is written."""
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        await self._stop_media()
        self._close_turns()
        counters = await self._release_transport()
        self.truth.record({"kind": "call", "event": "end", "call": self.pc_id, "call_index": self.index,
                           "t": time.monotonic(), "reason": reason, "turns": self.turn_no, **counters,
                           "telemetry": self.tel.counts()})
        self._closed()

    async def _stop_media(self) -> None:
        """Before the turns are closed: stop what still produces or sends audio."""

    async def _release_transport(self) -> dict:
        """After the turns are closed: release the transport; its counters for the call's end record."""
        return {}

    def _closed(self) -> None:
        """After the end record: tell the owner (`on_closed`)."""
        if self.on_closed:
            self.on_closed(self)

    def _close_turns(self) -> None:
        """The call ends: stop endpointing, cancel every unfinished turn (recorded as call_closed)."""
        self.endpointer.close()
        for turn in list(self.active):
            for task in [turn.task, *turn.tts_tasks]:
                if task is not None and not task.done():
                    task.cancel()
            self._finish(turn, "call_closed")
        self.tel.detach()


class Call(Pipeline):
    """A WebRTC call (aiortc): Opus packets in, a paced Opus track out."""

    def __init__(self, *, cfg: AgentConfig, index: int, pc_id: str, tts, truth, clock, on_closed=None,
                 request_data=None):
        self.track = ReplyTrack()
        super().__init__(cfg=cfg, index=index, pc_id=pc_id, tts=tts, truth=truth, clock=clock, out=self.track,
                         on_closed=on_closed)
        self.request_data = request_data
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.decoder = OpusDecoder()
        self.opus_pt: int | None = None
        self.rx_packets = self.rx_late = self.rx_dropped = 0
        self.tx_packets = self.tx_dropped = 0
        self._hi_seq: int | None = None
        self._pkt: dict = {}  # the media packet being handed over (for _mark)
        self._unsent: dict[int, dict] = {}  # out packet records waiting for their wire instant, by seq
        self._first_seq: dict[int, Turn] = {}  # seq of a reply's first voiced packet → its turn
        self._held: list[Turn] = []  # finished turns whose record waits for their first packet's wire instant
        self.audible = AudibleTracker()  # decodes the outgoing packets: the barge-in's last audible sample
        self._later = []
        self._watchdog: asyncio.Task | None = None
        self.channel = None

    # ------------------------------------------------------------------ signalling
    async def accept(self, sdp: str, type_: str) -> dict:
        check_offer(sdp)
        pc = self.pc

        @pc.on("datachannel")
        def on_datachannel(channel):
            self._attach_channel(channel)

        @pc.on("connectionstatechange")
        async def on_state():
            if pc.connectionState in ("failed", "closed"):
                await self.close(f"connection {pc.connectionState}")

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=type_))
        except Exception as exc:
            raise OfferError(f"the offer was refused by WebRTC: {exc}") from None
        audio = [t for t in pc.getTransceivers() if t.kind == "audio"]
        if not audio:
            raise OfferError("the offer has no audio transceiver")
        tr = audio[0]
        opus = [c for c in tr._codecs if c.mimeType.lower() == "audio/opus"]
        if not opus:
            raise OfferError("no Opus codec in common with the offer")
        tr._codecs = opus  # answer with Opus only
        self.opus_pt = opus[0].payloadType
        pc.addTrack(self.track)
        answer = await pc.createAnswer()
        await pc.setLocalDescription(answer)
        cfg = self.cfg
        if cfg.net_stall_ms and cfg.net_stall_every_ms:
            log.warning("call %s: net_stall_ms stalls a ws-telephony stream (TCP); over WebRTC use net_loss / "
                        "net_jitter_ms", self.pc_id)
        out_spec = ImpairmentSpec(cfg.net_delay_ms, cfg.net_jitter_ms, cfg.net_jitter_dist, cfg.net_loss)
        in_spec = ImpairmentSpec(cfg.in_delay_ms, cfg.in_jitter_ms, cfg.net_jitter_dist, cfg.in_loss)
        self._later.append(wrap_outgoing(tr.sender.transport, Impairment(out_spec, [cfg.seed, self.index, 1]),
                                         self._on_media_sent, self._on_media_wire))
        self._later.append(wrap_incoming(tr.receiver, Impairment(in_spec, [cfg.seed, self.index, 2]),
                                         self._on_packet_in))
        self._watchdog = asyncio.ensure_future(self._watch())
        self._prepare_replies()
        self.truth.record({"kind": "call", "event": "start", "call": self.pc_id, "call_index": self.index,
                           "t": time.monotonic(), "telemetry_clock": self.clock.describe(),
                           "config": cfg.model_dump()})
        desc = pc.localDescription
        return {"sdp": desc.sdp, "type": desc.type, "pc_id": self.pc_id}

    async def renegotiate(self, sdp: str, type_: str) -> dict:
        check_offer(sdp)
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=type_))
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        except Exception as exc:
            raise OfferError(f"the renegotiation offer was refused by WebRTC: {exc}") from None
        desc = self.pc.localDescription
        return {"sdp": desc.sdp, "type": desc.type, "pc_id": self.pc_id}

    async def add_candidate(self, candidate) -> None:
        await self.pc.addIceCandidate(candidate)

    def _attach_channel(self, channel) -> None:
        self.channel = channel

        @channel.on("message")
        def on_message(msg):
            self.tel.handle(msg, time.monotonic())

        if channel.readyState == "open":
            self.tel.attach(channel.send)
        else:
            channel.on("open", lambda: self.tel.attach(channel.send))
        channel.on("close", self.tel.detach)

    # ------------------------------------------------------------------ incoming audio
    def _on_packet_in(self, packet, t_arrival, t_wire, delay) -> None:
        if self.closed:
            return
        seq, ts = packet.sequence_number, packet.timestamp
        rec = {"kind": "packet", "dir": "in", "call": self.pc_id, "seq": seq, "rtp_ts": ts,
               "wire": t_wire, "arrival": t_arrival, "delay_ms": delay * 1000.0, "dropped": t_arrival is None}
        if t_arrival is None:
            self.rx_dropped += 1
            self._log_packet(rec)
            return
        if packet.payload_type != self.opus_pt or not packet.payload:
            return
        self.last_rx = t_arrival
        self.rx_packets += 1
        if self._hi_seq is not None and ((seq - self._hi_seq) & 0xFFFF) >= 0x8000:
            self.rx_late += 1  # older than what was decoded already: too late for the decoder
            rec["late"] = True
            self._log_packet(rec)
            return
        self._hi_seq = seq
        try:
            frames = self.decoder.decode(JitterFrame(data=packet.payload, timestamp=ts))
        except Exception as exc:
            log.info("call %s: undecodable packet %d: %s", self.pc_id, seq, exc)
            return
        if frames:
            channels = len(frames[0].layout.channels)
            pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in frames])  # s16, interleaved
            mono = np.ascontiguousarray(pcm.reshape(-1, channels)[:, 0]) if channels > 1 else pcm
            voiced, peak = self._heard(mono, PacketRef(t_arrival, seq, ts))
            rec["voiced"] = voiced
            rec["peak"] = peak / 32768.0
        self._log_packet(rec)

    def _log_packet(self, rec: dict) -> None:
        if self.truth.wants_packets:
            self.truth.packet(rec)

    # ------------------------------------------------------------------ outgoing audio
    def _on_media_wire(self, data: bytes, t_wire: float, t_start: float | None = None) -> None:
        """The real send instant of a media packet (after the injected delay and whatever the loop added):
        `t_wire` when the send returned, `t_start` when it began (the datagram left in between)."""
        seq, _ts, _pt = rtp_header(data)
        rec = self._unsent.pop(seq, None)
        if rec is not None:
            rec["wire"] = t_wire
            rec["wire_start"] = t_start
            self._log_packet(rec)
        turn = self._first_seq.pop(seq, None)
        if turn is not None:
            turn.t["audio_first_wire"] = t_wire
            turn.t["audio_first_wire_start"] = t_start
            self._release()

    def _waits(self, turn: Turn) -> bool:
        return any(t is turn for t in self._first_seq.values()) or not self.audible.ready(turn.no)

    def _release(self) -> None:
        for turn in [t for t in self._held if not self._waits(t)]:
            self._held = [t for t in self._held if t is not turn]
            super()._record_turn(turn)

    def _record_turn(self, turn: Turn) -> None:
        """Hold a finished turn's record until its first reply packet has really left (a starved loop can fire the
        delayed send after the reply's last packet was handed over; seen: 440 ms at 20 calls on 2 cores) and, after
        a barge-in, until the decoder tail after the stop packet is decoded (harness/agent/audible.py)."""
        if self._waits(turn):
            self._held.append(turn)
        else:
            super()._record_turn(turn)

    def _on_media_sent(self, data: bytes, t_send: float, delay: float, dropped: bool) -> None:
        seq, ts, _pt = rtp_header(data)
        self.tx_packets += 1
        self.tx_dropped += dropped
        info = self.track.ledger.info_for_rtp(ts)
        rec = {"kind": "packet", "dir": "out", "call": self.pc_id, "seq": seq, "rtp_ts": ts, "send": t_send,
               "delay_ms": delay * 1000.0, "dropped": dropped}
        self.audible.packet(seq, ts, RtpPacket.parse(data).payload, [p.turn for p in info.parts] if info else [],
                            {p.turn: p.offset for p in info.parts} if info else None)
        if info is not None:
            rec.update(frame=info.index, sched=info.sched, produced=info.produced)
            rec["turns"] = [part.turn for part in info.parts] or None
            if rec["turns"] is None:
                del rec["turns"]
            self._pkt = {"seq": seq, "rtp_ts": ts, "delay_ms": delay * 1000.0, "dropped": dropped}
            self._handed_over(info, t_send)
            for part in info.parts:
                if part.first_voiced_offset is not None:
                    rec["first_voiced_offset"] = part.first_voiced_offset
        if dropped:
            rec["wire"] = None
            self._log_packet(rec)
        else:
            self._unsent[seq] = rec  # logged with its wire instant by _on_media_wire
        if self._held:
            self._release()

    def _mark(self, turn: Turn, what: str, part) -> None:
        p = self._pkt
        if what == "start":
            turn.reply.update(start_seq=p["seq"], start_rtp_ts=p["rtp_ts"])
        elif what == "first":
            turn.reply.update(first_seq=p["seq"], first_rtp_ts=p["rtp_ts"], first_delay_ms=p["delay_ms"],
                              first_dropped=p["dropped"])
            if not p["dropped"]:
                self._first_seq[p["seq"]] = turn
        else:
            turn.reply["last_seq"] = p["seq"]

    def _stopped(self, turn: Turn) -> None:
        """The stop packet: its playout instant at the client (+ the codec delay) is where the reply stops."""
        p = self._pkt
        turn.barge_in.update(audio_stopped_seq=p["seq"], audio_stopped_rtp_ts=p["rtp_ts"],
                             audio_stopped_dropped=p["dropped"])
        self.audible.stopped(turn.no)

    # ------------------------------------------------------------------ records
    def _transport_record(self, turn: Turn, rec: dict) -> None:
        t, r = turn.t, turn.reply
        if turn.barge_in and turn.barge_in.get("audio_stopped_seq") is not None:
            turn.barge_in.update(self.audible.result(turn.no))  # the last audible sample of the decoded reply
        else:
            self.audible.drop(turn.no)
        rec.update({
            "audio_first_wire": t.get("audio_first_wire"),
            "audio_first_wire_start": t.get("audio_first_wire_start"),
            "audio_first_sent_seq": r.get("first_seq"), "audio_first_sent_rtp_ts": r.get("first_rtp_ts"),
            "audio_first_injected_delay_ms": r.get("first_delay_ms"), "audio_first_dropped": r.get("first_dropped"),
            "reply_start_seq": r.get("start_seq"), "reply_start_rtp_ts": r.get("start_rtp_ts"),
            "reply_end_seq": r.get("last_seq"),
        })

    # ------------------------------------------------------------------ lifetime
    async def _watch(self) -> None:
        try:
            while not self.closed:
                await asyncio.sleep(min(1.0, self.cfg.idle_timeout_s / 4))
                idle = time.monotonic() - self.last_rx
                if idle > self.cfg.idle_timeout_s:
                    log.warning("call %s: no audio from the client for %.0f s; closing it", self.pc_id, idle)
                    await self.close(f"no incoming audio for {self.cfg.idle_timeout_s:g} s")
                    return
        except asyncio.CancelledError:
            pass

    async def _stop_media(self) -> None:
        self.endpointer.close()
        for later in self._later:
            later.cancel()
        for rec in self._unsent.values():  # delayed packets that never left
            rec["wire"] = None
            self._log_packet(rec)
        self._unsent.clear()
        if self._watchdog is not None and self._watchdog is not asyncio.current_task():
            self._watchdog.cancel()

    async def _release_transport(self) -> dict:
        self._first_seq.clear()
        for turn in self._held:  # their first packet never left: no wire instant
            super()._record_turn(turn)
        self._held.clear()
        try:
            await self.pc.close()
        except Exception as exc:  # pragma: no cover - closing a broken connection
            log.debug("call %s: close: %s", self.pc_id, exc)
        return {"rx_packets": self.rx_packets, "rx_late": self.rx_late, "rx_dropped": self.rx_dropped,
                "tx_packets": self.tx_packets, "tx_dropped": self.tx_dropped,
                "ledger_mismatches": self.track.ledger.mismatches,
                "max_frame_lateness_ms": self.track.max_lateness * 1000.0}


def cfg_hang(cfg: AgentConfig) -> float:
    return cfg.endpoint_hangover_ms / 1000.0


def _durations(rec: dict) -> dict:
    def d(a, b):
        x, y = rec.get(a), rec.get(b)
        return None if x is None or y is None else (y - x) * 1000.0

    return {
        "endpointing": d("last_voiced_mic_arrival", "user_speech_end_detected"),
        "stt": d("user_speech_end_detected", "stt_final"),
        "llm_dispatch": d("stt_final", "llm_request"),
        "llm_ttft": d("llm_request", "llm_first_token"),
        "reasoning": d("llm_first_token", "llm_first_visible_token"),
        "aggregation": d("llm_first_visible_token", "tts_request"),
        "tts_ttfb": d("tts_request", "tts_first_audio"),
        "agent_output": d("tts_first_audio", "audio_first_sent"),
        "network": rec.get("audio_first_injected_delay_ms"),
    }
