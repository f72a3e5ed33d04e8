import numpy as np
import pytest

from harness.audio.boundaries import Region
from harness.audio.turns import Turn, find_turns, pair_turns

SR = 48000
EXCHANGES = [("I would like to book a table for two", "Sure for what day"),
             ("Tomorrow evening around seven", "Seven works for us"),
             ("Can you also tell me where to park", "There is a car park behind the building"),
             ("Yes thank you very much", None),  # no reply
             ("Let me check the calendar", "Okay that sounds fine"),
             ("Perfect see you then", "Goodbye")]
GAPS = [0.09, 0.3, 3.0, 1.0, 0.5, 1.5]


def R(a, b):
    return Region(a, b, SR)


def test_pairing_rules():
    user = [R(100, 200), R(1000, 1100), R(2000, 2100), R(3000, 3100)]
    agent = [R(150, 180),  # starts while the user speaks: not a reply
             R(300, 400), R(500, 600),  # one reply in two pieces
             R(2050, 2500),  # overlaps the third utterance's end: starts inside it, not a reply
             R(3200, 3300)]
    turns = pair_turns(user, agent, SR, max_utterance_pause_s=0.0)  # regions ms apart: no joining here
    assert [t.status for t in turns] == ["ok", "no_response", "no_response", "ok"]
    assert (turns[0].agent_start, turns[0].agent_end) == (300, 600)
    assert turns[3].agent_start == 3200
    assert turns[0].gap_ms == pytest.approx(100 / 48)
    assert turns[1].gap_ms is None
    assert [t.index for t in turns] == [1, 2, 3, 4]


def test_reply_must_start_before_the_next_utterance():
    turns = pair_turns([R(0, 100), R(1000, 1100)], [R(1000, 1200)], SR, max_utterance_pause_s=0.0)
    assert turns[0].status == "no_response"  # starts exactly with the next utterance: belongs to neither
    assert turns[1].status == "no_response"


def test_turn_dict_has_the_three_keys_first():
    t = Turn(1, 0, 127_829, 148_809, 200_000, SR)
    d = t.to_dict()
    assert list(d)[:3] == ["user_speech_end_s", "agent_audio_start_s", "gap_ms"]
    assert d["user_speech_end_s"] == 2.6631 and d["agent_audio_start_s"] == 3.1002 and d["gap_ms"] == 437.1
    assert d["status"] == "ok"
    n = Turn(2, 0, 48000, None, None, SR).to_dict()
    assert n["agent_audio_start_s"] is None and n["gap_ms"] is None and n["status"] == "no_response"


@pytest.mark.parametrize("noise_db, threshold_db", [(None, -20.0), (40.0, -20.0), (25.0, -10.0)])
def test_find_turns_on_espeak_conversation(conversation, noise_db, threshold_db):
    x, truth = conversation(EXCHANGES, gaps_s=GAPS, noise_db=noise_db, comfort_noise_db=45.0,
                            threshold_db=threshold_db, seed=11)
    # comfort noise on the ear where no reply comes: still no_response
    t3 = truth[3]
    cn = np.random.default_rng(4).standard_normal(int(0.3 * SR)) * 0.5 * 10 ** (-50 / 20)
    x[t3["user_end"] + SR // 2 : t3["user_end"] + SR // 2 + len(cn), 1] += cn
    turns = find_turns(x[:, 0], x[:, 1], SR)
    assert len(turns) == len(truth)
    for t, tr in zip(turns, truth):
        assert abs(t.user_end - tr["user_end"]) <= 144  # 3 ms
        if tr["agent_start"] is None:
            assert t.status == "no_response"
            continue
        assert t.status == "ok"
        assert abs(t.agent_start - tr["agent_start"]) <= 144
        true_gap = (tr["agent_start"] - tr["user_end"]) / SR * 1e3
        assert abs(t.gap_ms - true_gap) <= 6.0


def test_ear_options_apply_to_the_ear_only(conversation):
    x, truth = conversation(EXCHANGES[:2], gaps_s=[0.5])
    # a minimum speech length longer than any reply: every turn becomes no_response
    turns = find_turns(x[:, 0], x[:, 1], SR, ear_opts={"min_speech_ms": 5000})
    assert [t.status for t in turns] == ["no_response", "no_response"]


def test_user_regions_with_no_reply_between_them_are_one_utterance():
    """A pause inside an utterance longer than min_pause_ms (a comma pause) gives two user regions; with no agent
    speech starting between them and a pause under 0.5 s they are one utterance, one turn."""
    user = [R(0, 48000), R(48000 + 19200, 2 * 48000)]  # 400 ms pause
    agent = [R(2 * 48000 + 24000, 3 * 48000)]
    t = pair_turns(user, agent, SR)
    assert len(t) == 1 and (t[0].user_start, t[0].user_end) == (0, 2 * 48000)
    assert t[0].agent_start == 2 * 48000 + 24000 and t[0].gap_ms == pytest.approx(500.0)


def test_user_regions_stay_apart_when_the_agent_answered_or_the_user_waited():
    # the agent started between them: two turns
    t = pair_turns([R(0, 48000), R(72000, 96000)], [R(50000, 60000)], SR)
    assert [x.status for x in t] == ["ok", "no_response"]
    # 600 ms (or 2 s) of silence and no answer: the first is a no_response turn
    t = pair_turns([R(0, 48000), R(76800, 96000)], [R(100000, 120000)], SR)
    assert [x.status for x in t] == ["no_response", "ok"]
    t = pair_turns([R(0, 48000), R(144000, 192000)], [R(200000, 240000)], SR)
    assert [x.status for x in t] == ["no_response", "ok"] and t[1].user_start == 144000
    # the limit is a parameter
    t = pair_turns([R(0, 48000), R(144000, 192000)], [R(200000, 240000)], SR, max_utterance_pause_s=3.0)
    assert len(t) == 1 and t[0].status == "ok"


def test_utterance_split_by_noise_is_one_turn_on_the_corpus():
    """flite, white noise at 25 dB SNR (bench/voice_corpus.py, seed 7): one user utterance is found as two regions;
    the turn still holds the whole utterance and its reply (truth cut from the source signal)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    import voice_corpus as vc

    from harness.audio.boundaries import speech_regions

    c = vc.conversation("flite", 7, noise_kind="white", snr_db=25.0)
    sc = vc.score(c, speech_regions(c.audio[:, 0], SR), speech_regions(c.audio[:, 1], SR))
    assert sc["utterance_parts"] == 1 and sc["split"] == 0
    assert sc["found"] == sc["turns"] == 6
