"""A plain aiortc client for the agent tests (deliberately not vlh's own client).

It sends a paced mic track (20 ms frames of queued audio, silence otherwise), opens the "chat" data channel,
stamps every agent RTP packet on arrival (wrapping its receiver's `_handle_rtp_packet`, then handing the packet on),
and keeps the decoded agent audio and every data-channel message with its arrival time.
"""

from __future__ import annotations

import asyncio
import fractions
import json
import time
from collections import deque

import aiohttp
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from av import AudioFrame

SR = 48000
FRAME = 960


class MicTrack(MediaStreamTrack):
    kind = "audio"

    def __init__(self):
        super().__init__()
        self._queue: deque = deque()
        self._t0 = None
        self._n = 0
        self.frame_times: list[float] = []  # host instant each frame was handed to the sender

    def play(self, audio: np.ndarray) -> None:
        pcm = np.clip(np.round(np.asarray(audio, dtype=np.float64) * 32767), -32768, 32767).astype(np.int16)
        self._queue.extend(pcm.tolist())

    @property
    def idle(self) -> bool:
        return not self._queue

    async def recv(self) -> AudioFrame:
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now
        sched = self._t0 + self._n * FRAME / SR
        if sched > now:
            await asyncio.sleep(sched - now)
        n = min(FRAME, len(self._queue))
        pcm = np.zeros(FRAME, dtype=np.int16)
        if n:
            pcm[:n] = [self._queue.popleft() for _ in range(n)]
        frame = AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SR
        frame.pts = self._n * FRAME
        frame.time_base = fractions.Fraction(1, SR)
        self._n += 1
        self.frame_times.append(time.monotonic())
        return frame


class AgentTestClient:
    def __init__(self, url: str, request_data: dict | None = None, label: str = "chat"):
        self.url = url
        self.request_data = request_data
        self.label = label
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.mic = MicTrack()
        self.arrivals: dict[int, float] = {}  # agent RTP seq → host arrival instant
        self.messages: list[tuple[float, dict]] = []
        self.ear: list[np.ndarray] = []
        self.pc_id = None
        self._reader = None
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
        orig = tr.receiver._handle_rtp_packet

        async def stamped(packet, arrival_time_ms):
            self.arrivals.setdefault(packet.sequence_number, time.monotonic())
            await orig(packet, arrival_time_ms)

        tr.receiver._handle_rtp_packet = stamped
        self._reader = asyncio.ensure_future(self._read(tr.receiver.track))
        await asyncio.wait_for(opened, 10)

    async def _read(self, track) -> None:
        try:
            while True:
                frame = await asyncio.wait_for(track.recv(), 5)
                a = frame.to_ndarray().reshape(-1, len(frame.layout.channels))[:, 0]
                self.ear.append(a.astype(np.float32) / 32768.0)
        except Exception:
            pass

    def ear_audio(self) -> np.ndarray:
        return np.concatenate(self.ear) if self.ear else np.zeros(0, np.float32)

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
        if self._reader:
            self._reader.cancel()
        await self.pc.close()


async def wait_for(pred, timeout: float, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        await asyncio.sleep(step)
    raise TimeoutError("condition not met in time")
