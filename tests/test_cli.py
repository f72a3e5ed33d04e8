"""`vlh` as a user meets it: every bad argument of every subcommand is one line on stderr and exit 2 — never a
traceback; a crash is one line naming a log file that holds the traceback; the exit-code table is in --help."""

from __future__ import annotations

import pytest

from harness.cli import main as vlh
from harness.errors import EXIT_CODES


def _bad_args(tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder\n")
    not_wav = tmp_path / "x.wav"
    not_wav.write_text("not a wav")
    empty = tmp_path / "empty"
    empty.mkdir()
    return [
        ["run", "--timeout", "-1"],
        ["run", "--timeout", "0"],
        ["run", "--timeout", "soon"],
        ["run", "--connect-timeout", "0"],
        ["run", "--calls", "0"],
        ["run", "--turns", "0"],
        ["run", "--out", "/proc/vlh-cannot/exist"],
        ["run", "--out", str(a_file)],
        ["run", "--agent", "http://user:pw@127.0.0.1:9/api/offer", "--header", "Authorization: Bearer x"],
        ["run", "--agent", "http://127.0.0.1:9/api/offer", "--agent-set", "tts_ttfb_ms=300"],
        ["run", "--agent", "ftp://host/x"],
        ["run", "--agent-set", "novalue"],
        ["run", "--jitter-buffer", "elastic"],
        ["run", "--header", "NoColon"],
        ["run", "--map-processor", "x=nowhere"],
        ["run", "--scenario", str(tmp_path / "missing.yaml")],
        ["run", "--transport", "carrier-pigeon"],
        ["run", "--mic-device", "x"],
        ["suite", str(tmp_path / "no-such-dir")],
        ["suite", str(empty), "--alpha", "2"],
        ["suite", str(empty), "--baseline", "0"],
        ["suite", str(empty), "--agent", "http://u:p@h:1/x", "--header", "Authorization: y"],
        ["report", str(tmp_path / "no-such-run")],
        ["report", str(a_file)],
        ["report", str(empty)],
        ["analyze", str(tmp_path / "missing.wav")],
        ["analyze", str(not_wav)],
        ["analyze", str(empty)],
        ["analyze", "--vad-mode", "9", str(not_wav)],
        ["agent", "--profile", "no-such-profile", "--print-config"],
        ["scenarios", "validate", str(tmp_path / "nothing-here")],
        ["demo", "--noise-db", "loud"],
        ["no-such-command"],
    ]


def _run(argv, capsys):
    try:
        code = vlh(argv)
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    return code, capsys.readouterr().err


def test_every_bad_argument_is_one_line_and_exit_2(tmp_path, capsys):
    for argv in _bad_args(tmp_path):
        code, err = _run(argv, capsys)
        assert "Traceback" not in err, (argv, err)
        assert code == 2, (argv, code, err)
        lines = [ln for ln in err.strip().splitlines() if ln.startswith("vlh") or ln.startswith("usage")]
        # argparse prints usage + one error line; vlh's own checks one "vlh: error:" line
        assert err.strip().splitlines()[-1].startswith(("vlh: error:", "vlh ")), (argv, err)
        assert lines, (argv, err)


def test_a_crash_is_one_line_pointing_at_the_traceback(monkeypatch, tmp_path, capsys):
    import harness.commands.report as report

    def boom(args):
        raise RuntimeError("simulated bug at http://u:secret@host/x?token=abc")

    monkeypatch.setenv("VLH_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setattr(report, "run", boom)
    code, err = _run(["report", str(tmp_path)], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vlh: error: vlh failed unexpectedly"), err
    logs = list((tmp_path / "logs").glob("vlh-crash-*.log"))
    assert len(logs) == 1 and str(logs[0]) in lines[0]
    text = logs[0].read_text()
    assert "Traceback" in text and "RuntimeError" in text and "in boom" in text
    assert "secret" not in text and "token=abc" not in text


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["suite", "--help"]])
def test_help_lists_the_exit_codes(argv, capsys):
    with pytest.raises(SystemExit):
        vlh(argv)
    out = capsys.readouterr().out
    assert "exit codes:" in out
    for code in EXIT_CODES:
        assert f"  {code} " in out
