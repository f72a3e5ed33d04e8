"""Audio: synthesis, VAD and speech boundaries, resampling, WAV I/O, noise and the capture timeline.

`SAMPLE_RATE` is vlh's one audio rate (Opus's and WebRTC's 48 kHz): the capture, the reference agent, the sound
devices and the synthesised utterances all run at it, and every module imports it from here.
"""

SAMPLE_RATE = 48000
