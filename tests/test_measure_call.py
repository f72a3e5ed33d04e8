"""harness/measure/measure_call.py: how a recorded stall of the harness's loop widens an arrival stamp's uncertainty;
a call's turns measured from a capture streamed to disk are those measured from the same capture held in RAM (issue
19.3), and the chunked noise floor is the whole-channel one."""

import numpy as np
import pandas as pd

from harness.audio import boundaries as bnd
from harness.audio.capture import EAR, MIC, Capture, Timeline
from harness.audio.synth import synthesize
from harness.measure.measure_call import TurnPlan, _stall_at, channel_floor, measure_call

SR = 48000
QUESTIONS = ["What time is it now?", "Book a table for two.", "How far is the airport?",
             "Is the museum open today?", "Call me a taxi.", "Thank you, goodbye."]
REPLY = "Sure, one moment please."


def _call(t0: float = 200.0, gap_s: float = 12.0):
    """Six turns of real speech (espeak-ng), the agent answering 700 ms after each question, room noise."""
    rng = np.random.default_rng(7)
    n = int((len(QUESTIONS) * gap_s + 2) * SR)
    mic = (rng.standard_normal(n) * 2e-4).astype(np.float32)
    ear = (rng.standard_normal(n) * 2e-4).astype(np.float32)
    reply = synthesize(REPLY)
    plans, gaps = [], []
    voiced = lambda x: np.flatnonzero(np.abs(x) > 1e-3)  # noqa: E731  (espeak pads with digital silence)
    for k, q in enumerate(QUESTIONS):
        a = synthesize(q)
        s = int((1 + k * gap_s) * SR)
        mic[s:s + len(a)] += a
        r = s + len(a) + int(0.7 * SR)
        ear[r:r + len(reply)] += reply
        plans.append(TurnPlan(k + 1, q, t0 + s / SR, t0 + (s + len(a)) / SR))
        gaps.append(1e3 * ((r + voiced(reply)[0]) - (s + voiced(a)[-1])) / SR)
    for p, nxt in zip(plans, plans[1:]):
        p.next_start = nxt.mic_start
    return Capture(mic, ear, t0, SR), plans, np.array(gaps)


def _streamed(cap: Capture, tmp_path) -> Capture:
    """The same channels written as a transport writes them: 20 ms mic frames at frame boundaries, ear frames at
    their (non-aligned) playout instants, through a timeline that keeps 2 s in RAM."""
    tl = Timeline(cap.t0_mono, resident_s=2.0, chunk_s=1.0, spill_dir=tmp_path)
    for a in range(0, len(cap), 960):
        tl.write_at(MIC, a, cap.mic[a:a + 960])
        e = a + 37
        tl.place(EAR, cap.time_of(e), cap.ear[e:e + 960])
    tl.place(EAR, cap.t0_mono, cap.ear[:37])
    assert tl.spilled_bytes > 0
    return tl.capture()


def test_streamed_capture_measures_the_same_turns(tmp_path):
    ram, plans, gaps = _call()
    disk = _streamed(ram, tmp_path)
    assert np.array_equal(disk.mic, ram.mic) and np.array_equal(disk.ear, ram.ear)
    rows_ram, _ = measure_call(ram, plans)
    rows_disk, _ = measure_call(disk, plans)
    a, b = pd.DataFrame(rows_ram), pd.DataFrame(rows_disk)
    assert (a["status"] == "ok").all() and len(a) == len(QUESTIONS)
    pd.testing.assert_frame_equal(a, b)
    # and the turns are where the speech was put (to the analysis' own tolerance), so the comparison is not empty
    ttfa = a["ttfa_ms"].to_numpy(float) if "ttfa_ms" in a else None
    assert ttfa is not None and np.all(np.abs(ttfa - gaps) < 25), (ttfa, gaps)


def test_chunked_noise_floor_is_the_whole_channel_floor():
    rng = np.random.default_rng(11)
    x = (rng.standard_normal(int(150.3 * SR)) * 1e-3).astype(np.float32)
    x[SR * 30:SR * 90] *= 20  # loud minute: the percentile must see every frame
    assert channel_floor(x, SR) == bnd.noise_floor(x, SR)
    assert channel_floor(x[:SR * 5], SR) == bnd.noise_floor(x[:SR * 5], SR)



def test_an_arrival_stamped_just_after_a_stall_may_be_late_by_all_of_it():
    stalls = [(10.0, 0.030), (20.0, 0.008)]
    assert _stall_at(stalls, 10.025) == 0.030  # stamped during the stall
    assert _stall_at(stalls, 10.035) == 0.030  # at its end (the loop wakes within one 10 ms tick)
    assert _stall_at(stalls, 10.050) == 0.0  # well after: the loop was running
    assert _stall_at(stalls, 9.99) == 0.0
    assert _stall_at(None, 10.0) == 0.0


def test_the_mic_frame_holding_a_sample_after_a_stall_burst():
    """A stall: frames 5…9 (nominally 100…200 ms) leave together at 194 ms, so their places overlap and are not in
    order of n; frame 10 is on time again (200 ms). A sample is held by the last frame written over it — a
    searchsorted over the unordered starts picked an on-time frame and hid the 94 ms lateness."""
    from harness.measure.measure_call import _mic_frame_of

    sr = 48000
    late = [0.0] * 5 + [0.094, 0.074, 0.054, 0.034, 0.014] + [0.0] * 5
    at = lambda ms: int(round(ms * sr / 1000))  # noqa: E731
    assert _mic_frame_of(at(196), late, sr) == 9  # the burst: frames 5…9 all cover 194…214 ms
    assert late[_mic_frame_of(at(196), late, sr)] == 0.014
    assert _mic_frame_of(at(205), late, sr) == 10  # frame 10 (200…220 ms) was written after the burst
    assert _mic_frame_of(at(50), late, sr) == 2
    assert _mic_frame_of(at(150), late, sr) is None  # the hole the stall left: no frame was written there
    assert _mic_frame_of(at(305), late, sr) is None  # after the last frame
