import pytest

from harness.audio.synth_cli import CliEngine, cli_output
from harness.errors import VlhError


def _engine(program, render):
    return CliEngine(name="fake", program=program, package="fake-tts", version=lambda: "1",
                     voices=lambda: {"a/en-x": "Alpha", "b": "Beta"}, default_voice="b", render=render)


def test_missing_program_says_how_to_install():
    eng = _engine("vlh-no-such-tts", lambda t, v, r, o: ["vlh-no-such-tts", str(o)])
    assert not eng.available()
    with pytest.raises(VlhError, match=r"`vlh-no-such-tts` is not installed \(run: sudo apt-get install fake-tts\)"):
        eng.run("hello", "b", 175)
    assert cli_output(["vlh-no-such-tts"]) == ""


def test_program_that_writes_nothing_is_one_clear_error():
    eng = _engine("sh", lambda t, v, r, o: ["sh", "-c", "echo 'voice file missing' >&2; exit 3"])
    with pytest.raises(VlhError, match=r"TTS engine fake \(voice b\) wrote no audio for 'hello': voice file missing"):
        eng.run("hello", "b", 175)


def test_resolve_by_id_short_id_or_name():
    eng = _engine("sh", None)
    assert eng.resolve("a/en-x") == eng.resolve("EN-X") == eng.resolve("alpha") == "a/en-x"
    assert eng.resolve(None) == "b"
    with pytest.raises(VlhError, match="fake has no such voice"):
        eng.resolve("gamma")
