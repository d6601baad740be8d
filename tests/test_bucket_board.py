"""The board that hands out buckets to a run's search processes (vitune.tuner.bucket_board)."""

import multiprocessing as mp

import pytest

from vitune.tuner.bucket_board import JOIN_MIN_LEFT, BucketBoard
from vitune.tuner.isolation import process_context


def board(buckets=3, searchers=2):
    return BucketBoard(buckets, searchers, mp.get_context("spawn"))


def test_each_process_takes_a_bucket_of_its_own_while_there_are_any():
    b = board()
    first, second = b.claim(0, 3), b.claim(1, 3)
    assert (first.bucket, first.rank, second.bucket, second.rank) == (0, 0, 1, 0)
    assert first.searchers() == second.searchers() == 1
    b.leave(0)
    assert b.finished(0) and not b.finished(1)
    assert b.claim(0, 3).bucket == 2


def test_with_no_bucket_left_to_start_a_process_joins_one_still_searched():
    b = board()
    b.claim(0, 3), b.claim(1, 3)
    b.leave(1)
    b.claim(1, 3)  # bucket 2
    b.leave(1)
    joined = b.claim(1, 3)  # bucket 1 and 2 are closed: bucket 0, beside process 0
    assert (joined.bucket, joined.rank, joined.searchers()) == (0, 1, 2)
    b.leave(1)  # one finished it: closed to newcomers, but not finished while 0 is on it
    assert joined.closed() and not b.finished(0)
    assert b.claim(1, 3) is None
    b.leave(0)
    assert b.finished(0)


def test_a_process_takes_only_buckets_whose_plans_it_has():
    b = board()
    assert b.claim(1, 1).bucket == 0
    assert b.claim(0, 1).bucket == 0  # (joins: bucket 1's plan is not there yet)


def test_together_every_process_searches_each_bucket_in_turn():
    """--share all: both take bucket 0; the first to finish it moves on to bucket 1, which
    the other joins once done with 0; a bucket nearly done is skipped for the next."""
    b = BucketBoard(3, 2, mp.get_context("spawn"), together=True)
    first, second = b.claim(0, 3), b.claim(1, 3)
    assert (first.bucket, second.bucket, second.rank, second.searchers()) == (0, 0, 1, 2)
    b.leave(0)
    assert second.closed() and b.claim(0, 3).bucket == 1
    b.leave(1)
    assert b.finished(0) and b.claim(1, 3).bucket == 1
    b.leave(1)  # bucket 1 done; process 0 is still on it
    later = b.claim(1, 3)
    later.report(ran=95, budget=100, best=1.0)
    b.leave(0)
    assert later.bucket == 2 and b.finished(1)
    assert b.claim(0, 3) is None  # (bucket 2 has 5 trials left)


def test_a_bucket_nearly_done_is_left_to_those_on_it():
    b = board(buckets=1)
    seat = b.claim(0, 1)
    seat.report(ran=100 - JOIN_MIN_LEFT + 1, budget=100, best=3.5)
    assert b.claim(1, 1) is None
    assert b.progress(0) == (100 - JOIN_MIN_LEFT + 1, 100, 3.5)
    seat.report(ran=100 - JOIN_MIN_LEFT, budget=100, best=None)
    assert b.claim(1, 1).bucket == 0
    assert b.progress(0)[2] is None


def test_a_bucket_left_unfinished_stays_open_for_another_process():
    """A search that failed (or a process that died) leaves its bucket open: another
    process takes it over, however little is left, and only its finish closes it."""
    b = board(buckets=1)
    seat = b.claim(1, 1)
    seat.report(ran=99, budget=100, best=1.0)
    b.leave(1, finished=False)
    assert not b.finished(0)
    again = b.claim(0, 1)
    assert (again.bucket, again.rank) == (0, 1)
    b.leave(0)
    assert b.finished(0)
    b.leave(0)  # (leaving twice changes nothing)
    assert b.finished(0) and b.searchers(0) == 0


def _claim_in_child(shared, out):
    seat = shared.claim(1, 2)
    seat.report(ran=3, budget=9, best=2.0)
    out.put(seat.bucket)


@pytest.mark.parametrize("method", ["spawn", "forkserver"])  # (the interpreter's, GPUs')
def test_processes_share_one_board(method, monkeypatch):
    if method == "forkserver":  # the fork server GPU workers come from, started as they
        monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # start it (it keeps the
        ctx = process_context({})  # environment it starts with, for this whole session)
    else:
        ctx = mp.get_context(method)
    assert ctx.get_start_method() == method
    b = BucketBoard(2, 2, ctx)
    out = ctx.Queue()
    child = ctx.Process(target=_claim_in_child, args=(b, out))
    child.start()
    assert out.get(timeout=60) == 0
    child.join(timeout=60)
    assert b.claim(0, 2).bucket == 1
    assert b.progress(0) == (3, 9, 2.0) and b.searchers(0) == 1
