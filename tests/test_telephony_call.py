"""The provider side of a phone call (harness/transports/telephony/call.py): the emulated playout queue, the mark
echo, `clear`, underruns and the 16 kHz check — against a real aiohttp WebSocket bot written here, whose own
send stamps are the truth (they never go through vlh's queue)."""

import asyncio
import base64
import json
import time

import numpy as np
from aiohttp import WSMsgType, web

from harness.audio import mulaw
from harness.transports.telephony.call import PlayoutQueue, RateCheck, TelephonyCall

RATE = 8000


def tone(seconds: float, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return mulaw.float_to_pcm16(amp * np.sin(2 * np.pi * 440 * t))


# ---- the queue alone ----------------------------------------------------------------------------------------
def test_queue_plays_from_arrival_and_back_to_back():
    q = PlayoutQueue()
    a = q.push(tone(0.02), 10.0)
    b = q.push(tone(0.02), 10.005)  # arrived while a played: waits for it
    assert a.start == 10.0 and abs(b.start - 10.02) < 1e-9
    assert abs(q.drained_at(10.01) - 10.04) < 1e-9
    assert q.underruns == 0
    c = q.push(tone(0.02), 10.1)  # the queue ran dry for 60 ms before it: an underrun
    assert c.start == 10.1 and q.underruns == 1
    q.push(tone(0.02), 10.1205)  # 0.5 ms late: the sender's jitter, not an underrun
    assert q.underruns == 1
    q.push(tone(0.02), 15.0)  # a new reply seconds later is not an underrun
    assert q.underruns == 1
    runs = q.runs()
    assert [round(t, 4) for t, _ in runs] == [10.0, 10.1, 10.1205, 15.0] and len(runs[0][1]) == 320


def test_clear_flushes_what_has_not_played():
    q = PlayoutQueue()
    for k in range(50):  # 1 s of audio arriving in one burst
        q.push(tone(0.02), 20.0)
    q.clear(20.31)
    assert q.clears == 1
    played = sum(len(p) for _, p in q.runs())
    assert played == round(0.31 * RATE)  # the chunk under way is cut at the clear, the rest dropped
    assert q.drained_at(20.31) == 20.31


def test_rate_check_flags_16k_and_not_a_burst():
    r = RateCheck()
    for k in range(40):  # 40 ms of audio every 20 ms, steadily: 16 kHz read as 8 kHz
        r.add(k * 0.02, 320)
    assert r.doubled() and "16 kHz" in r.describe()
    ok = RateCheck()
    for k in range(40):
        ok.add(k * 0.02, 160)
    assert not ok.doubled()
    burst = RateCheck()
    for k in range(100):  # a whole reply at once: 50× real time, a burst, not 16 kHz
        burst.add(k * 0.0004, 160)
    assert not burst.doubled()


# ---- a live socket ------------------------------------------------------------------------------------------
async def _bot(script):
    """A bot on a free port; `script(ws, stream, log)` runs once the `start` message came."""
    log = {"marks": [], "sent": []}

    async def handle(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            m = json.loads(msg.data)
            if m["event"] == "start":
                asyncio.ensure_future(script(ws, m["streamSid"], log))
            elif m["event"] == "mark":
                log["marks"].append((m["mark"]["name"], time.monotonic()))
        return ws

    app = web.Application()
    app.router.add_get("/ws", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"ws://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/ws", log


async def _send(ws, obj, log=None):
    await ws.send_str(json.dumps(obj))
    if log is not None:
        log["sent"].append((obj["event"], time.monotonic()))


def _media(stream, pcm):
    return {"event": "media", "streamSid": stream, "media": {"payload": base64.b64encode(mulaw.encode(pcm)).decode()}}


def test_mark_echoed_after_the_audio_before_it_has_played():
    """1 s of audio sent in one burst, then a mark: Twilio echoes the mark when that second has played, so the
    echo reaches the bot ≈ 1 s after the burst's first message; a mark with nothing queued comes back at once."""

    async def script(ws, stream, log):
        await _send(ws, {"event": "mark", "streamSid": stream, "mark": {"name": "empty"}}, log)
        await asyncio.sleep(0.2)
        for k in range(50):
            await _send(ws, _media(stream, tone(0.02)), log)
        await _send(ws, {"event": "mark", "streamSid": stream, "mark": {"name": "reply"}}, log)

    async def main():
        runner, url, log = await _bot(script)
        call = TelephonyCall(url)
        await call.connect()
        await asyncio.sleep(1.6)
        await call.close()
        await runner.cleanup()
        return call, log

    call, log = asyncio.run(main())
    marks = dict(log["marks"])
    sent = [t for ev, t in log["sent"] if ev == "mark"]
    first_media = next(t for ev, t in log["sent"] if ev == "media")
    assert set(marks) == {"empty", "reply"}
    assert 0 <= marks["empty"] - sent[0] < 0.02
    # played from the first message's arrival for 1.000 s; the echo's own trip is sub-ms on loopback
    assert 0.995 < marks["reply"] - first_media < 1.02, marks["reply"] - first_media
    assert call.playout.underruns == 0 and call.messages["media"] == 50


def test_clear_flushes_and_echoes_pending_marks():
    """2 s of audio in a burst and a mark, then `clear` 0.5 s later: the ear stops at the clear (the capture's ear
    channel holds ≈ 0.5 s of tone), the pending mark is echoed at once (Twilio's contract), the clear is counted."""

    async def script(ws, stream, log):
        for k in range(100):
            await _send(ws, _media(stream, tone(0.02)), log if k in (0, 99) else None)
        await _send(ws, {"event": "mark", "streamSid": stream, "mark": {"name": "reply"}})
        await asyncio.sleep(0.5)
        await _send(ws, {"event": "clear", "streamSid": stream}, log)

    async def main():
        runner, url, log = await _bot(script)
        call = TelephonyCall(url)
        await call.connect()
        await asyncio.sleep(1.2)
        await call.close()
        await runner.cleanup()
        return call, log

    call, log = asyncio.run(main())
    sent = dict(log["sent"])
    first_media = next(t for ev, t in log["sent"] if ev == "media")
    last_media = sent["media"]
    assert call.playout.clears == 1
    assert 0 <= dict(log["marks"])["reply"] - sent["clear"] < 0.03
    cap = call.capture()
    ear = cap.ear
    loud = np.flatnonzero(np.abs(ear) > 0.05)
    heard = (loud[-1] - loud[0]) / 48000
    # the ear played from the burst's arrival to the clear's: between these two bot-side spans (the burst itself
    # takes a few ms to send), ± 3 ms of delivery
    assert sent["clear"] - last_media - 0.003 < heard < sent["clear"] - first_media + 0.003, heard
