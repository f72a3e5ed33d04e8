"""A plain aiortc client for the agent tests (deliberately not vlh's own client), kept light so that ten of them
fit in one process next to the agent on a 2-core machine:

- the mic track paces 20 ms frames (`t0 + n·20 ms`) of queued audio, silence otherwise, and hands aiortc's sender
  ready Opus packets (aiortc's own encoder; steady silence is encoded once and reused);
- every agent RTP packet is stamped on arrival and stored (the receiver's `_handle_rtp_packet` is replaced: no
  jitter buffer, no decoder thread); `ear_audio()` decodes the stored packets afterwards with aiortc's decoder,
  each at its RTP timestamp;
- every data-channel message is kept with its arrival time.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import time
from collections import deque

import aiohttp
import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.codecs.opus import OpusDecoder, OpusEncoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamTrack
from av import AudioFrame, Packet

SR = 48000
FRAME = 960
TB = fractions.Fraction(1, SR)


class MicTrack(MediaStreamTrack):
    kind = "audio"

    def __init__(self):
        super().__init__()
        self._queue: deque = deque()
        self._t0 = None
        self._n = 0
        self.frame_times: list[float] = []  # host instant each frame was handed to the sender
        self._enc = OpusEncoder()
        self._quiet = 0
        self._silence = None

    def play(self, audio: np.ndarray) -> None:
        pcm = np.clip(np.round(np.asarray(audio, dtype=np.float64) * 32767), -32768, 32767).astype(np.int16)
        self._queue.append(pcm)

    @property
    def idle(self) -> bool:
        return not self._queue

    def _take(self) -> np.ndarray:
        out = np.zeros(FRAME, np.int16)
        at = 0
        while at < FRAME and self._queue:
            head = self._queue[0]
            n = min(FRAME - at, len(head))
            out[at:at + n] = head[:n]
            at += n
            if n == len(head):
                self._queue.popleft()
            else:
                self._queue[0] = head[n:]
        return out

    def _encode(self, pcm: np.ndarray) -> bytes:
        silent = not pcm.any()
        if silent and self._quiet >= 3 and self._silence is not None:
            return self._silence
        f = AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        f.sample_rate, f.pts, f.time_base = SR, self._n * FRAME, TB
        data = self._enc.encode(f)[0][0]
        self._quiet = self._quiet + 1 if silent else 0
        if silent and self._quiet >= 3:
            self._silence = data
        return data

    async def recv(self) -> Packet:
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now
        sched = self._t0 + self._n * FRAME / SR
        if sched > now:
            await asyncio.sleep(sched - now)
        packet = Packet(self._encode(self._take()))
        packet.pts, packet.time_base = self._n * FRAME, TB
        self._n += 1
        self.frame_times.append(time.monotonic())
        return packet


class AgentTestClient:
    def __init__(self, url: str, request_data: dict | None = None, label: str = "chat"):
        self.url = url
        self.request_data = request_data
        self.label = label
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.mic = MicTrack()
        self.arrivals: dict[int, float] = {}  # agent RTP seq → host arrival instant
        self.first_ts: int | None = None  # RTP timestamp of the first agent packet received (ear index 0)
        self.packets: list[tuple[int, int, bytes]] = []  # (seq, rtp ts, Opus payload) in arrival order
        self.messages: list[tuple[float, dict]] = []
        self.pc_id = None
        self._pongs: dict[int, asyncio.Future] = {}
        self.channel = None

    async def connect(self) -> None:
        self.pc.addTransceiver(self.mic, direction="sendrecv")
        self.channel = self.pc.createDataChannel(self.label)
        opened = asyncio.get_running_loop().create_future()
        self.channel.on("open", lambda: opened.done() or opened.set_result(True))

        @self.channel.on("message")
        def on_message(msg):
            t = time.monotonic()
            m = json.loads(msg)
            self.messages.append((t, m))
            if m.get("type") == "vlh.pong" and m.get("id") in self._pongs:
                self._pongs.pop(m["id"]).set_result((m, t))

        await self.pc.setLocalDescription(await self.pc.createOffer())
        body = {"sdp": self.pc.localDescription.sdp, "type": "offer"}
        if self.request_data is not None:
            body["request_data"] = self.request_data
        async with aiohttp.ClientSession() as s, s.post(f"{self.url}/api/offer", json=body) as r:
            ans = await r.json()
            assert r.status == 200, ans
        self.pc_id = ans["pc_id"]
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=ans["sdp"], type=ans["type"]))
        tr = self.pc.getTransceivers()[0]

        async def stamped(packet, arrival_time_ms):
            self.arrivals.setdefault(packet.sequence_number, time.monotonic())
            if self.first_ts is None:
                self.first_ts = packet.timestamp
            self.packets.append((packet.sequence_number, packet.timestamp, bytes(packet.payload)))

        tr.receiver._handle_rtp_packet = stamped
        await asyncio.wait_for(opened, 10)

    def ear_audio(self) -> np.ndarray:
        """The agent audio decoded with aiortc's Opus decoder, in sequence order, each packet placed at its RTP
        timestamp: index 0 = the first agent packet received. Lost packets leave silence."""
        if not self.packets:
            return np.zeros(0, np.float32)
        base = self.packets[0][0]
        order = sorted({((seq - base + 0x8000) & 0xFFFF, ts, p) for seq, ts, p in self.packets})
        dec, parts = OpusDecoder(), []
        for _, ts, payload in order:
            pos = (ts - self.first_ts) & 0xFFFFFFFF
            for fr in dec.decode(JitterFrame(data=payload, timestamp=ts)):
                a = fr.to_ndarray().reshape(-1, len(fr.layout.channels))[:, 0]
                parts.append((pos, a.astype(np.float32) / 32768.0))
                pos += len(a)
        out = np.zeros(max(p + len(a) for p, a in parts), np.float32)
        for p, a in parts:
            out[p:p + len(a)] = a
        return out

    async def ping(self, pid: int) -> tuple[dict, float, float]:
        """(pong, t0, t3)."""
        fut = asyncio.get_running_loop().create_future()
        self._pongs[pid] = fut
        t0 = time.monotonic()
        self.channel.send(json.dumps({"type": "vlh.ping", "id": pid, "t0": t0}))
        pong, t3 = await asyncio.wait_for(fut, 5)
        return pong, t0, t3

    def send(self, msg: dict) -> None:
        self.channel.send(json.dumps(msg))

    def events(self, name: str | None = None) -> list[dict]:
        return [m for _, m in self.messages if m.get("type") == "vlh.event" and (name is None or m["name"] == name)]

    def rtvi(self, type_: str | None = None) -> list[dict]:
        return [m for _, m in self.messages if m.get("label") == "rtvi-ai" and (type_ is None or m["type"] == type_)]

    async def close(self) -> None:
        await self.pc.close()


async def wait_for(pred, timeout: float, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        await asyncio.sleep(step)
    raise TimeoutError("condition not met in time")


def speech(text: str = "Hello, can you hear me?") -> np.ndarray:
    """Sharpened espeak speech (float32, 48 kHz): its first and last samples are the speech boundaries."""
    from harness.audio.synth import sharpen, synthesize

    audio, _ = sharpen(synthesize(text))
    return audio


async def converse(url: str, truth, utterances: list[np.ndarray], *, request_data=None, lead_s: float = 0.3,
                   pause_s: float = 0.3, timeout: float = 30.0, keep_open: bool = False):
    """Connect, say each utterance after the previous turn's record is written, return (client, turns,
    speech_frames) where speech_frames[k] = (first mic frame index, last mic frame index + 1) of utterance k."""
    c = AgentTestClient(url, request_data=request_data)
    await c.connect()
    frames = []
    try:
        await asyncio.sleep(lead_s)
        for k, u in enumerate(utterances):
            await wait_for(lambda: c.mic.idle, timeout)
            start = c.mic._n  # the frame being waited for takes its samples from the queue when its slot comes
            c.mic.play(u)
            frames.append((start, start + int(np.ceil(len(u) / FRAME))))
            await wait_for(lambda: len(truth.turns_of(c.pc_id)) > k, timeout)
            await asyncio.sleep(pause_s)
        turns = truth.turns_of(c.pc_id)
    finally:
        if not keep_open:
            await c.close()
    return c, turns, frames


@pytest.fixture(autouse=True)
def realtime():
    """Real-time tests run at nice −10 when permitted (see harness.devices.priority): the agent's timers then
    do not queue behind other processes' batch work on a shared 2-core machine."""
    from harness.devices.priority import niced

    with niced(-10):
        yield


def opus_roundtrip(audio: np.ndarray, lead_frames: int = 5) -> np.ndarray:
    """`audio` (float32) through aiortc's own Opus encoder and decoder, frame-aligned as the mic track sends it
    (after `lead_frames` of silence); returns the decoded int16 samples aligned to the input (lead removed)."""
    pcm = np.clip(np.round(np.asarray(audio, np.float64) * 32767), -32768, 32767).astype(np.int16)
    sig = np.concatenate([np.zeros(FRAME * lead_frames, np.int16), pcm, np.zeros(FRAME * 10, np.int16)])
    sig = sig[: len(sig) // FRAME * FRAME]
    enc, dec, out = OpusEncoder(), OpusDecoder(), []
    for k in range(len(sig) // FRAME):
        f = AudioFrame.from_ndarray(sig[k * FRAME:(k + 1) * FRAME].reshape(1, -1), format="s16", layout="mono")
        f.sample_rate, f.pts, f.time_base = SR, k * FRAME, fractions.Fraction(1, SR)
        payloads, ts = enc.encode(f)
        for p in payloads:
            for fr in dec.decode(JitterFrame(data=p, timestamp=ts)):
                out.append(fr.to_ndarray().reshape(-1, len(fr.layout.channels))[:, 0])
    return np.concatenate(out)[FRAME * lead_frames:]


class FileTruth:
    """The agent's truth and packet logs read back from their JSONL files (a subprocess agent's view)."""

    def __init__(self, truth_path, packet_path=None):
        self.truth_path, self.packet_path = truth_path, packet_path

    def _read(self, path) -> list[dict]:
        import os

        from harness.agent.truth import read_jsonl

        return read_jsonl(path, live=True) if path and os.path.exists(path) else []

    @property
    def turns(self) -> list[dict]:
        return [r for r in self._read(self.truth_path) if r.get("kind") == "turn"]

    @property
    def calls(self) -> list[dict]:
        return [r for r in self._read(self.truth_path) if r.get("kind") == "call"]

    def turns_of(self, call: str) -> list[dict]:
        return [r for r in self.turns if r["call"] == call]

    def packets_of(self, call: str, direction: str) -> list[dict]:
        return [r for r in self._read(self.packet_path) if r["call"] == call and r["dir"] == direction]


@contextlib.asynccontextmanager
async def agent_process(tmp_path, *flags: str, packet_log: bool = False, startup_s: float = 90.0):
    """`vlh agent --port 0 …` as a subprocess (the way `vlh run` starts it); yields (url, FileTruth, proc)."""
    import subprocess
    import sys

    tl, pl = tmp_path / "truth.jsonl", tmp_path / "packets.jsonl"
    extra = ["--packet-log", str(pl)] if packet_log else []
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "harness", "agent", "--port", "0", "--truth-log", str(tl), *extra,
        *flags, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), startup_s)
        url = line.decode().strip()
        if not url.startswith("http://"):
            err = (await proc.stderr.read()).decode()
            raise AssertionError(f"vlh agent did not start: {url!r} {err}")
        yield url, FileTruth(tl, pl), proc
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
