"""Silero VAD as a second opinion on the edges vlh misses at 25 dB SNR (issue 13): pipecat-ai (a test dependency)
ships silero_vad.onnx in its wheel; it runs here on onnxruntime, offline, never at vlh's run time. For each edge of
bench/voice_corpus.py that is > 5 ms off, does Silero call the missed stretch speech (p ≥ 0.5 in half its 32 ms frames)?
Control: a stretch as long just beyond the true edge (noise only). Result (2026-12-06, at commit 6160908): 249/368 missed stretches, but
170/368 controls too — its recurrent state holds "speech" over the noise after speech, so it cannot tell a soft tail
from the noise after it at 32 ms, let alone to ±5 ms. Not used.

    .venv/bin/python bench/silero_tails.py
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import onnxruntime as ort  # noqa: E402
import pipecat  # noqa: E402
import tail_audibility as ta  # noqa: E402
import voice_corpus as vc  # noqa: E402

from harness.audio.resample import resample  # noqa: E402

SR = 48000


def silero_session():
    so = ort.SessionOptions()
    so.inter_op_num_threads = so.intra_op_num_threads = 1
    path = pathlib.Path(pipecat.__file__).parent / "audio/vad/data/silero_vad.onnx"
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def probs(sess, x48: np.ndarray) -> np.ndarray:
    """Silero's speech probability per 32 ms frame (512 samples at 16 kHz, 64 samples of context)."""
    x = resample(np.asarray(x48, np.float32), SR, 16000)
    st, ctx, out = np.zeros((2, 1, 128), np.float32), np.zeros((1, 64), np.float32), []
    for i in range(len(x) // 512):
        inp = np.concatenate([ctx, x[i * 512 : (i + 1) * 512][None, :]], 1)
        o, st = sess.run(None, {"input": inp, "state": st, "sr": np.array(16000, np.int64)})
        ctx = inp[:, -64:]
        out.append(float(o[0][0]))
    return np.array(out)


def main() -> int:
    sess = silero_session()
    for fam in vc.FAMILIES:
        for kind in ("white", "pink", "babble"):
            n = hear = ctl_hear = 0
            cache = {}
            for r in ta.failing_edges(fam, kind, 25.0, 2, 6.0):
                key = (r["seed"], r["ch"])
                if key not in cache:
                    c = vc.conversation(fam, r["seed"], noise_kind=kind, snr_db=25.0)
                    cache[key] = (c, probs(sess, c.audio[:, r["ch"]]))
                c, p = cache[key]
                tr = (c.user if r["ch"] == 0 else c.agent)[r["j"]]
                tru = tr[0] if r["start"] else tr[1]
                a, b = sorted((tru + int(r["error_ms"] * SR / 1000), tru))
                fa = a * 16000 // SR // 512
                fb = max(fa + 1, b * 16000 // SR // 512)
                length = fb - fa
                ga, gb = (fa - length - 1, fa - 1) if r["start"] else (fb + 1, fb + 1 + length)
                miss, ctl = p[fa:fb], p[max(0, ga):gb]
                n += 1
                hear += bool(len(miss)) and (miss >= 0.5).mean() >= 0.5
                ctl_hear += bool(len(ctl)) and (ctl >= 0.5).mean() >= 0.5
            if n:
                print(f"{fam} {kind} 25 dB: {hear}/{n} missed stretches Silero calls speech; control (as long, beyond "
                      f"the true edge, noise only): {ctl_hear}/{n}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
