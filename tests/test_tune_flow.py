"""How `vitune tune` orders its work across buckets with a team (stand-ins for the search,
the crown and the team: no processes, no kernels): the team gets every bucket at the start,
the main process moves on to the next bucket without waiting for the team, and crowns a
bucket between its own rounds of the next one as soon as the team has finished it too."""

from dataclasses import dataclass
from types import SimpleNamespace

from vitune.runtime.gpu import interpreter_identity
from vitune.tuner import tune as tune_module
from vitune.tuner.search import TuneOptions
from vitune.tuner.workloads import Workload

WORKLOADS = [Workload(f"w{i}", (16, 8), heads=1, head_dim=32, dtype="float16")
             for i in range(3)]


@dataclass(frozen=True)
class FakePlan:
    name: str
    study_name: str
    workload: Workload
    searchers: int = 1


class FakeWorker:
    def __init__(self, *args):
        pass

    def start(self):
        pass

    def stop(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


def test_buckets_are_crowned_between_trials_once_the_team_is_done(monkeypatch, tmp_path):
    events = []
    rounds_done = {}  # bucket -> rounds this process has run on it

    class FakeTeam(FakeWorker):
        def start(self, plan):
            events.append(("team starts", plan.name))

        def release(self):
            events.append(("team released",))

        def finished(self, plan, wait=False):
            # the team ends a bucket during this process's second round of the next one
            later = WORKLOADS.index(plan.workload) + 1
            done = wait or rounds_done.get(later, 0) >= 2
            if wait:
                events.append(("waited for", plan.name))
            return done

    searchers = []

    def fake_search(plan, worker, seed_offset, compiler, on_trial, between_trials):
        searchers.append(plan.searchers)
        for _ in range(3):
            between_trials()
            rounds_done[WORKLOADS.index(plan.workload)] = \
                rounds_done.get(WORKLOADS.index(plan.workload), 0) + 1
            events.append(("round", plan.name))

    def fake_crown(plan, default, worker, compiler=None):
        events.append(("crown", plan.name))
        return SimpleNamespace(name=plan.name, study_name=plan.name)

    monkeypatch.setattr(tune_module, "plan_bucket",
                        lambda w, gpu, opts: (FakePlan(w.name, w.name, w), None))
    monkeypatch.setattr(tune_module, "search", fake_search)
    monkeypatch.setattr(tune_module, "crown_bucket", fake_crown)
    monkeypatch.setattr(tune_module, "save_results", lambda *args: None)
    monkeypatch.setattr(tune_module, "IsolatedWorker", FakeWorker)
    monkeypatch.setattr(tune_module, "SearchTeam", FakeTeam)
    results = tune_module.tune(WORKLOADS, interpreter_identity(), tmp_path, TuneOptions(),
                               workers=2)
    assert [r.name for r in results] == ["w0", "w1", "w2"]
    assert searchers == [2, 2, 2]  # every plan knows how many processes share it
    assert events == [
        ("team starts", "w0"), ("team starts", "w1"), ("team starts", "w2"),
        ("team released",),
        ("round", "w0"), ("round", "w0"), ("round", "w0"),
        ("round", "w1"), ("round", "w1"), ("crown", "w0"), ("round", "w1"),
        ("round", "w2"), ("round", "w2"), ("crown", "w1"), ("round", "w2"),
        ("waited for", "w2"), ("crown", "w2")]
