"""RawSpill / SpilledRaw: a call's raw telemetry messages kept on disk and read back whole (issue 19.3)."""

import json
import pickle

from harness.telemetry.spill import RawSpill, SpilledRaw


def test_messages_read_back_whole_from_disk_in_any_order(tmp_path):
    spill = RawSpill(str(tmp_path))
    msgs = [{"type": "vlh.event", "name": "tts_request", "t": 1234.5678901234567, "turn": k} for k in range(50)]
    msgs.append({"label": "rtvi-ai", "type": "bot-tts-text", "data": {"text": "Ça coûte 5 € — d’accord?"}})
    refs = [spill.put(json.dumps(m, ensure_ascii=False)) for m in msgs]
    assert spill.count == len(msgs) and spill.size > 0
    for ref, m in reversed(list(zip(refs, msgs))):
        assert isinstance(ref, SpilledRaw) and ref == m and dict(ref) == m and {**ref} == m
    assert refs[7]["turn"] == 7 and refs[7].get("missing") is None and "name" in refs[7] and len(refs[7]) == 4
    assert json.dumps(dict(refs[-1]), ensure_ascii=False) == json.dumps(msgs[-1], ensure_ascii=False)
    assert pickle.loads(pickle.dumps(refs[3])) == msgs[3]  # crosses a process boundary as the dict
    # the file is unlinked: nothing is left behind in the folder
    assert list(tmp_path.iterdir()) == []
    spill.close()
