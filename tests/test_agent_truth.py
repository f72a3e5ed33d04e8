"""The agent's truth log: records written whole, read back whole while another process is still writing."""

import json
import threading

import pytest

from harness.agent.truth import TruthLog, read_jsonl
from harness.errors import VlhError


def test_unfinished_last_line_is_left_for_the_next_read_of_a_live_log(tmp_path):
    p = tmp_path / "truth.jsonl"
    p.write_text('{"kind":"call","call":"a"}\n{"kind":"turn","ca')
    assert read_jsonl(p, live=True) == [{"kind": "call", "call": "a"}]
    with pytest.raises(VlhError, match=r"truth.jsonl line 2: not a JSON record"):
        read_jsonl(p)  # a finished file with a broken line is an error, named by file and line


def test_a_reader_never_sees_half_a_record_larger_than_a_write_buffer(tmp_path):
    p = tmp_path / "truth.jsonl"
    log = TruthLog(p, memory=False)
    big = {"kind": "turn", "call": "c", "samples": list(range(6000))}  # ~30 KB: several default buffers
    n_records = 60
    done = threading.Event()

    def writer():
        for i in range(n_records):
            log.record({**big, "turn": i})
        done.set()

    t = threading.Thread(target=writer)
    t.start()
    seen = 0
    while not done.is_set():
        recs = read_jsonl(p, live=True)  # raises on a torn record
        assert all(len(r["samples"]) == 6000 for r in recs)
        seen = max(seen, len(recs))
    t.join()
    log.close()
    recs = read_jsonl(p)
    assert [r["turn"] for r in recs] == list(range(n_records))
    assert json.loads(p.read_text().splitlines()[-1])["turn"] == n_records - 1
