"""vlh — the voice-latency harness: what the user of a voice agent hears, and why."""

__version__ = "0.1.0"
