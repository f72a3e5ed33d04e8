"""measure_call helpers: how a recorded stall of the harness's loop widens an arrival stamp's uncertainty."""

from harness.measure.measure_call import _stall_at


def test_an_arrival_stamped_just_after_a_stall_may_be_late_by_all_of_it():
    stalls = [(10.0, 0.030), (20.0, 0.008)]
    assert _stall_at(stalls, 10.025) == 0.030  # stamped during the stall
    assert _stall_at(stalls, 10.035) == 0.030  # at its end (the loop wakes within one 10 ms tick)
    assert _stall_at(stalls, 10.050) == 0.0  # well after: the loop was running
    assert _stall_at(stalls, 9.99) == 0.0
    assert _stall_at(None, 10.0) == 0.0
