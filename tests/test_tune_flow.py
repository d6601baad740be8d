"""How `vitune tune` shares its buckets among search processes (stand-ins for the search,
the crown and the team's member: no processes, no kernels): a member takes the first
bucket as soon as its plan arrives, the main process the next one nobody has started, and
once none is left each joins a bucket still searched; the main process crowns a bucket
between its own trials as soon as everyone on it is done, and shows every bucket's
progress."""

from dataclasses import dataclass
from types import SimpleNamespace

from vitune.bench.workloads import Workload
from vitune.runtime.gpu import interpreter_identity
from vitune.tuner import tune as tune_module
from vitune.tuner.plan import TuneOptions

WORKLOADS = [Workload(f"w{i}", (16, 8), heads=1, head_dim=32, dtype="float16")
             for i in range(3)]


@dataclass(frozen=True)
class FakePlan:
    name: str
    study_name: str
    workload: Workload
    budget: int = 3


def no_workers(stack, env, jobs, timeout_s, capability=None, fork_first=False, peers=False):
    return None, None, None


class Inert:
    """A stand-in team base: takes any arguments, does nothing, is a context manager."""

    def __init__(self, *args, **kwargs):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


def test_buckets_are_shared_out_and_crowned_as_everyone_on_them_is_done(monkeypatch,
                                                                       tmp_path):
    events = []

    class FakeMember(Inert):
        """Search process 1: takes a bucket whenever it is free, and needs four of the
        main process's trials to finish one."""

        def __init__(self, envs, board, jobs, capability, timeout_s):
            self.board, self.plans, self.seat, self.left = board, [], None, 0

        def send(self, plan):
            self.plans.append(plan)
            if self.seat is None and self.left == 0:
                self.take()

        def take(self):
            self.seat = self.board.claim(1, len(self.plans))
            if self.seat is not None:
                self.left = 4
                events.append(("member takes", self.plans[self.seat.bucket].name,
                               self.seat.rank))

        def check(self):
            if self.seat is not None:
                self.left -= 1
                if self.left == 0:
                    self.board.leave(1)
                    events.append(("member done", self.plans[self.seat.bucket].name))
                    self.take()

    def fake_search(plan, worker, seed_offset, compiler, between_trials, seat):
        for trial in range(3):
            between_trials()
            seat.report(trial + 1, 3, 10.0 + trial)
            events.append(("trial", plan.name, seat.rank))

    def fake_crown(plan, default, worker, compiler=None, peer_worker=None):
        events.append(("crown", plan.name))
        return SimpleNamespace(name=plan.name, study_name=plan.name, trials={"ran": 4})

    shown = {}

    def on_bucket_start(w):
        return lambda ran, budget, best: shown.__setitem__(w.name, (ran, budget, best))

    monkeypatch.setattr(tune_module, "plan_bucket",
                        lambda w, gpu, opts: (FakePlan(w.name, w.name, w), None))
    monkeypatch.setattr(tune_module, "search", fake_search)
    monkeypatch.setattr(tune_module, "crown_bucket", fake_crown)
    monkeypatch.setattr(tune_module, "save_results", lambda *args: None)
    monkeypatch.setattr(tune_module, "start_search_workers", no_workers)
    monkeypatch.setattr(tune_module, "SearchTeam", FakeMember)
    results = tune_module.tune(WORKLOADS, interpreter_identity(), tmp_path, TuneOptions(),
                               on_bucket_start=on_bucket_start, workers=2)
    assert [r.name for r in results] == ["w0", "w1", "w2"]  # (in the run's order)
    assert events == [
        ("member takes", "w0", 0),
        ("trial", "w1", 0), ("trial", "w1", 0), ("trial", "w1", 0),
        # this process took w2 (nobody had); the member, done with w0, joins it there
        ("member done", "w0"), ("member takes", "w2", 1),
        ("crown", "w0"), ("crown", "w1"),
        ("trial", "w2", 0), ("trial", "w2", 0), ("trial", "w2", 0),
        ("member done", "w2"), ("crown", "w2")]  # (once the member is done with it too)
    # every bucket's bar, this process's or not, ends with the study's count
    assert shown == {"w0": (4, 3, None), "w1": (4, 3, 12.0), "w2": (4, 3, 12.0)}


def test_a_bucket_a_member_failed_on_is_finished_by_the_main_process(monkeypatch, tmp_path):
    """The member's search raises: the member stops (it would only take the bucket again)
    and leaves the bucket open; the main process takes it over and crowns every bucket."""
    import multiprocessing as mp
    import queue

    from vitune.tuner import search_processes as team_module
    from vitune.tuner.bucket_board import BucketBoard

    board = BucketBoard(2, 2, mp.get_context("spawn"))
    inbox = queue.Queue()  # (the member runs in this process here)
    plans = [FakePlan(w.name, w.name, w) for w in WORKLOADS[:2]]
    for plan in plans:
        inbox.put(plan)

    def failing_search(plan, worker, seed_offset, compiler, seat):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(team_module, "start_search_workers", no_workers)
    monkeypatch.setattr(team_module, "start_fork_server", lambda: None)
    monkeypatch.setattr(team_module, "search", failing_search)
    monkeypatch.setattr(team_module.signal, "signal", lambda *args: None)
    team_module._member_main({}, 1, 0, None, 60, inbox, board)
    assert not board.closed(0) and board.searchers(0) == 0  # open, nobody on it
    assert board.claim(1, 2).bucket == 1  # (the member had not started bucket 1)
    board.leave(1)

    events = []

    def fake_search(plan, worker, seed_offset, compiler, between_trials, seat):
        events.append(("search", plan.name, seat.rank))

    class IdleTeam(Inert):
        def send(self, plan):
            pass

        def check(self):
            pass

    monkeypatch.setattr(tune_module, "BucketBoard", lambda *args, **kwargs: board)
    monkeypatch.setattr(tune_module, "plan_bucket",
                        lambda w, gpu, opts: (FakePlan(w.name, w.name, w), None))
    monkeypatch.setattr(tune_module, "search", fake_search)
    monkeypatch.setattr(tune_module, "crown_bucket", lambda plan, *args: SimpleNamespace(
        name=plan.name, study_name=plan.name, trials={"ran": 3}))
    monkeypatch.setattr(tune_module, "save_results", lambda *args: None)
    monkeypatch.setattr(tune_module, "start_search_workers", no_workers)
    monkeypatch.setattr(tune_module, "SearchTeam", IdleTeam)
    results = tune_module.tune(WORKLOADS[:2], interpreter_identity(), tmp_path,
                               TuneOptions(), workers=2)
    assert events == [("search", "w0", 1)]  # (bucket 1 was finished above)
    assert [r.name for r in results] == ["w0", "w1"]
