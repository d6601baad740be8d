"""The search loop with a stand-in trial worker (no kernel runs, so it is fast): every
proposal is told back, only trials that ran count, repeats are never re-run, a stalled
sampler still makes progress, the search stops when the valid space is exhausted, and
configs are compiled ahead and timed as their compiles finish."""

import dataclasses
import time
from concurrent.futures import Future

import optuna
import pytest
import torch

from vitune.bench.workloads import Workload
from vitune.kernels.vision_attn.space import KernelConfig, valid_configs
from vitune.runtime.gpu import interpreter_identity
from vitune.tuner import search_loop as loop
from vitune.tuner.compile_pool import CompilePool, default_compile_jobs
from vitune.tuner.isolation import Outcome
from vitune.tuner.trial import PREPARE

GPU = interpreter_identity()
BIG_FP32 = Workload("d256 fp32", (40, 9), heads=1, head_dim=256, dtype="float32")  # 12 valid


class FakeWorker:
    """Stands in for the trial worker: a made-up rate per config; records what it ran."""

    def __init__(self, fail_block_n=None):
        self.ran = []
        self.prepared = []  # len(self.ran) at each request to build the inputs
        self.fail_block_n = fail_block_n

    def send(self, req):
        self.sent = req

    def ready(self):  # (never done before the picks that may run meanwhile are)
        return False

    def receive(self, timeout_s):
        return self.call(self.sent, timeout_s)

    def call(self, req, timeout_s):
        if req.backend == PREPARE:
            self.prepared.append(len(self.ran))
            return Outcome(True, {})
        cfg = KernelConfig.from_dict(req.config)
        self.ran.append(cfg)
        if cfg.block_n == self.fail_block_n:
            return Outcome(False, reason="ValueError: wrong result: relative error 3e-01")
        rate = cfg.block_m + cfg.block_n + cfg.num_stages
        return Outcome(True, {"median_ms": 1.0 / rate, "tflops": float(rate)})


def make_plan(tmp_path, workload, sampler, budget):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    optuna.create_study(storage=storage, study_name="s", direction="maximize")
    return loop.SearchPlan(workload, GPU, "s", sampler, storage, budget, timeout_s=None, seed=0,
                           rep_ms=1, trial_timeout_s=60)


def trials(plan):
    return optuna.load_study(study_name="s", storage=plan.storage).trials


def test_every_proposal_is_told_and_only_trials_that_ran_count(tmp_path):
    plan = make_plan(tmp_path, BIG_FP32, "random", budget=6)
    worker = FakeWorker()
    loop.search(plan, worker, seed_offset=0)
    ts = trials(plan)
    assert len(worker.ran) == 6 == len(set(worker.ran))  # never the same config twice
    assert sum(loop.trial_ran(t) for t in ts) == 6
    rejected = [t for t in ts if t.user_attrs.get("rejected_by_rules")]
    assert rejected and all(t.value == 0.0 and t.user_attrs["reason"] for t in rejected)
    by_number = {t.number: t for t in ts}
    for t in ts:
        if "repeat_of" in t.user_attrs:
            assert t.value == by_number[t.user_attrs["repeat_of"]].value


def test_search_stops_when_every_valid_config_ran(tmp_path):
    valid = set(valid_configs(256, torch.float32, GPU.arch))
    plan = make_plan(tmp_path, BIG_FP32, "tpe", budget=10**6)
    worker = FakeWorker(fail_block_n=64)
    loop.search(plan, worker, seed_offset=0)
    assert set(worker.ran) == valid and len(worker.ran) == len(valid)
    failed = [t for t in trials(plan) if loop.trial_ran(t) and t.state.name == "FAIL"]
    assert failed and all("wrong result" in t.user_attrs["reason"] for t in failed)


def test_a_sweep_runs_every_valid_config_and_asks_for_no_invalid_one(tmp_path):
    valid = set(valid_configs(256, torch.float32, GPU.arch))
    plan = make_plan(tmp_path, BIG_FP32, "grid", budget=10**6)
    worker = FakeWorker()
    loop.search(plan, worker, seed_offset=0)
    assert set(worker.ran) == valid and len(worker.ran) == len(valid)
    assert len(trials(plan)) == len(valid)  # (no rule rejections, no repeats)


def test_a_sampler_stuck_on_one_config_still_makes_progress(tmp_path, monkeypatch):
    stuck = next(valid_configs(256, torch.float32, GPU.arch))
    monkeypatch.setattr(loop, "make_sampler", lambda name, seed, budget: optuna.samplers.
                        PartialFixedSampler(stuck.to_dict(), optuna.samplers.RandomSampler()))
    plan = make_plan(tmp_path, BIG_FP32, "tpe", budget=4)
    worker = FakeWorker()
    loop.search(plan, worker, seed_offset=0)
    assert len(worker.ran) == 4 == len(set(worker.ran)) and worker.ran[0] == stuck


class FakeCompiler:
    """Stands in for CompilePool: records the size of each batch submitted, fails every
    second request."""

    jobs = 3

    def __init__(self):
        self.rounds = []

    def compile(self, requests):
        self.rounds.append(len(requests))
        return [Outcome(False, reason="out of resources: shared memory") if i % 2 else
                Outcome(True, {"compile_s": 0.5}) for i in range(len(requests))]

    def submit(self, requests):
        futures = [Future() for _ in requests]
        for future, outcome in zip(futures, self.compile(requests), strict=True):
            future.set_result(outcome)
        return futures


def test_a_pool_of_configs_compiles_at_once_and_compile_failures_are_failed_trials(
        tmp_path):
    plan = make_plan(tmp_path, BIG_FP32, "random", budget=5)
    compiler, worker = FakeCompiler(), FakeWorker()
    loop.search(plan, worker, seed_offset=0, compiler=compiler)
    assert max(compiler.rounds) <= 3 and sum(compiler.rounds) == 5
    ran = [t for t in trials(plan) if loop.trial_ran(t)]
    failed = [t for t in ran if t.state.name == "FAIL"]
    assert len(ran) == 5 and len(worker.ran) == 5 - len(failed)
    assert failed and all(t.user_attrs["reason"].startswith("compile: out of resources")
                          for t in failed)
    assert all(t.user_attrs["compile_s"] == 0.5 for t in ran if t.state.name == "COMPLETE")
    # while the first configs compile, the timing worker builds the inputs (once)
    assert worker.prepared == [0]
    assert compiler.rounds[0] == 1  # (an empty pipeline: its first compile starts at once)


def test_the_compile_pool_gives_each_request_the_first_free_process(monkeypatch):
    """More requests than processes wait for one to be free; no process is ever given two
    at once (the crown's compiles queue behind a search's)."""
    import threading

    from vitune.tuner import compile_pool

    busy, lock = set(), threading.Lock()

    class SlowProcess:
        def __init__(self, *args, **kwargs):
            pass

        def start(self):
            pass

        def call(self, request, timeout_s):
            with lock:
                assert self not in busy
                busy.add(self)
            time.sleep(0.05)
            with lock:
                busy.discard(self)
            return Outcome(True, {"request": request, "process": id(self)})

        def stop(self):
            pass

        def close(self):
            pass

    monkeypatch.setattr(compile_pool, "IsolatedWorker", SlowProcess)
    with CompilePool(jobs=2, capability=(9, 0)) as pool:
        outcomes = pool.compile(list(range(7)))
    assert [o.value["request"] for o in outcomes] == list(range(7))
    assert len({o.value["process"] for o in outcomes}) == 2
    assert 1 <= default_compile_jobs() <= 8


def test_compile_processes_share_the_cores_among_search_processes(monkeypatch):
    import os

    monkeypatch.setattr(os, "cpu_count", lambda: 32)
    assert [default_compile_jobs(n) for n in (1, 2, 4)] == [16, 14, 6]
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert [default_compile_jobs(n) for n in (1, 2, 8)] == [14, 6, 1]


def test_tpe_starts_with_a_third_of_its_budget_at_random():
    assert [loop.tpe_startup_trials(b) for b in (None, 12, 40, 98, 400)] == [10, 10, 13, 30, 30]
    sampler = loop.make_sampler("tpe", seed=0, budget=98)
    assert sampler._n_startup_trials == 30  # noqa: SLF001 (Optuna exposes no getter)


@pytest.mark.parametrize("started_by_this_run", [True, False])
def test_trials_other_processes_run_count_against_the_budget(tmp_path, started_by_this_run):
    """Trials another search process of this run is running count against the budget (so
    two processes do not both fill their pipelines at the end); trials left RUNNING by a
    run that was killed before this one planned the bucket do not."""
    plan = make_plan(tmp_path, BIG_FP32, "random", budget=5)
    study = optuna.load_study(study_name="s", storage=plan.storage)
    elsewhere = list(valid_configs(256, torch.float32, GPU.arch))[:2]
    for cfg in elsewhere:  # asked, never told: running in another process
        study.enqueue_trial(cfg.to_dict())
        study.ask(loop.DISTRIBUTIONS)
    time.sleep(0.01)
    since = time.time() - (5 if started_by_this_run else 0)
    plan = dataclasses.replace(plan, since=since)
    worker = FakeWorker()
    loop.search(plan, worker, seed_offset=0)
    assert len(worker.ran) == (3 if started_by_this_run else 5)
    assert not set(worker.ran) & set(elsewhere)


def test_refinement_tries_neighbours_of_the_fastest_first():
    valid = list(valid_configs(256, torch.float32, GPU.arch))
    fast, slow = valid[0], valid[-1]
    ran = {cfg: optuna.trial.create_trial(params=cfg.to_dict(), distributions=loop.DISTRIBUTIONS,
                                          value=rate)
           for cfg, rate in ((fast, 2.0), (slow, 1.0))}
    fresh = set(valid) - set(ran)

    def differs_in_one_field(a, b):
        return sum(x != y for x, y in zip(a.as_tuple(), b.as_tuple(), strict=True)) == 1

    out = loop.neighbours_of_best(ran, fresh, top=2)
    assert out and len(out) == len(set(out)) and set(out) <= fresh
    near_fast = [differs_in_one_field(c, fast) for c in out]
    assert all(near_fast[:near_fast.count(True)])  # the fastest's neighbours lead
    assert all(differs_in_one_field(c, fast) or differs_in_one_field(c, slow) for c in out)
    assert loop.neighbours_of_best(ran, fresh, top=1) == out[:near_fast.count(True)]


def test_the_crown_weighs_the_bucket_band_and_reports_the_bucket_shape(tmp_path):
    """The fastest config at the bucket's own length loses the crown to one that is nearly
    as fast there but far faster at the other lengths the runtime will give it; a config
    that fails on any shape of the band never wins."""
    from vitune.tuner import crown

    full = Workload("full", (150, 150), heads=1, head_dim=256, dtype="float32")
    band = crown.band_workloads(full)
    assert [w.seqlens for w in band] == [(75,) * 4, (300,), (150, 150)]
    assert crown.band_workloads(BIG_FP32) == [BIG_FP32]  # windows: no band
    valid = list(valid_configs(256, torch.float32, GPU.arch, windows=False))
    spiky, steady, broken = valid[:3]

    class BandWorker(FakeWorker):
        def call(self, req, timeout_s):
            cfg, own = KernelConfig.from_dict(req.config), req.workload == full
            if cfg == broken and not own:
                return Outcome(False, reason="ValueError: wrong result")
            rate = {spiky: 10.0 if own else 1.0, steady: 9.0, broken: 20.0}.get(cfg, 0.5)
            return Outcome(True, {"median_ms": 1.0 / rate, "tflops": rate})

    plan = dataclasses.replace(make_plan(tmp_path, full, "random", budget=3),
                               first=(spiky, steady, broken))
    study = optuna.load_study(study_name="s", storage=plan.storage)
    worker = BandWorker()
    loop.search(plan, worker, seed_offset=0)

    class BandCompiler(FakeCompiler):  # records what it compiled and what had run by then
        def __init__(self):
            super().__init__()
            self.batches = []

        def compile(self, requests):
            self.batches.append([(r.workload.seqlens, KernelConfig.from_dict(r.config),
                                  len(worker.ran)) for r in requests])
            return [Outcome(True, {"compile_s": 0.1}) for _ in requests]

    compiler, ran_before = BandCompiler(), len(worker.ran)
    result = crown._crown(study, plan, worker, default=valid[3], compiler=compiler)
    assert result.config == steady and result.tflops == 9.0 and result.default_tflops == 0.5
    # every candidate compiled for the band's other shapes (the pool takes them all at
    # once: they wait for a free process there), before timing
    compiled = [item for batch in compiler.batches for item in batch]
    assert {(seqlens, cfg) for seqlens, cfg, _ in compiled} == \
        {(shape.seqlens, cfg) for shape in band[:2] for cfg in (spiky, steady, broken, valid[3])}
    assert all(ran == ran_before for *_, ran in compiled)
    crown = optuna.load_study(study_name="s", storage=plan.storage).user_attrs["crown"]
    assert crown["started"] > 0 and crown["retime_s"] >= 0 and crown["peers_s"] >= 0


def test_chosen_configs_are_new_running_trials_no_other_process_can_take(tmp_path):
    """A config the loop picks itself (first, refinement, random) becomes a trial created
    RUNNING, not a queued one: on SQLite two processes could both take a queued trial, and
    the second's updates then failed ("Trial#197 has already finished", on two GPUs)."""
    plan = make_plan(tmp_path, BIG_FP32, "tpe", budget=1)
    mine, other = (optuna.load_study(study_name="s", storage=plan.storage) for _ in range(2))
    cfg = next(valid_configs(256, torch.float32, GPU.arch))
    chosen = loop.ask_for(mine, cfg, searcher=0)
    proposed = other.ask(loop.DISTRIBUTIONS)  # the other process's sampler proposal
    assert proposed.number != chosen.number
    frozen = {t.number: t for t in trials(plan)}
    assert frozen[chosen.number].state.name == "RUNNING"
    assert KernelConfig(**frozen[chosen.number].params) == cfg
    assert not [t for t in frozen.values() if t.state.name == "WAITING"]


@pytest.mark.parametrize("sampler", ["tpe", "grid"])
def test_the_plans_first_configs_run_first_and_only_once(tmp_path, sampler):
    valid = list(valid_configs(256, torch.float32, GPU.arch))
    first = (valid[-1], valid[3])
    plan = dataclasses.replace(make_plan(tmp_path, BIG_FP32, sampler, budget=len(valid)),
                               first=first)
    worker = FakeWorker()
    loop.search(plan, worker, seed_offset=0)
    assert tuple(worker.ran[:2]) == first
    assert sorted(worker.ran, key=valid.index) == valid  # the grid still covers all, once
    assert not [t for t in trials(plan) if t.state.name in ("WAITING", "RUNNING")]


def test_a_prepare_request_builds_the_inputs_and_reference_and_runs_nothing():
    from vitune.tuner import trial

    w = Workload("prepare", (8, 4), heads=1, head_dim=32, dtype="float32")
    assert trial.run_trial(trial.TrialRequest(w, PREPARE, None, interpret=True)) == {}
    q, *_, reference, rotary = trial._inputs[w]  # noqa: SLF001
    assert reference is not None and reference.shape == q.shape and rotary is None


def test_a_bucket_keeps_its_inputs_through_a_crown_of_three_other_shapes():
    """The trial worker keeps the last KEEP_INPUTS workloads' inputs and references: a
    crown's three shapes between two trials of a bucket do not make it build them again."""
    from vitune.tuner import trial

    def w(n):
        return Workload(f"keep {n}", (8, n), heads=1, head_dim=32, dtype="float32")

    trial._inputs.clear()  # noqa: SLF001
    bucket = trial._inputs_for(w(1), "cpu")  # noqa: SLF001
    for n in (2, 3, 4):  # the crown's shapes
        trial._inputs_for(w(n), "cpu")  # noqa: SLF001
    assert trial._inputs_for(w(1), "cpu") is bucket  # noqa: SLF001
    for n in (5, 6, 7, 8):
        trial._inputs_for(w(n), "cpu")  # noqa: SLF001
    assert w(1) not in trial._inputs and len(trial._inputs) == trial.KEEP_INPUTS  # noqa: SLF001


def test_a_tuning_run_writes_sqlite_ahead_and_a_reader_leaves_the_file_alone(tmp_path):
    """A run's SQLite storage is in write-ahead-log mode (readers do not wait for another
    process's writes); opening a finished run's file to read it does not change it."""
    import sqlite3

    def journal_mode(path):
        with sqlite3.connect(path) as db:
            return db.execute("PRAGMA journal_mode").fetchone()[0]

    read = tmp_path / "read.db"
    optuna.create_study(storage=f"sqlite:///{read}", study_name="s")
    before = read.read_bytes()
    storage = loop.open_storage(f"sqlite:///{read}", read_only=True)
    assert optuna.load_study(study_name="s", storage=storage).trials == []
    assert read.read_bytes() == before and journal_mode(read) == "delete"

    run = tmp_path / "run.db"
    storage = loop.open_storage(f"sqlite:///{run}")
    with storage.engine.connect() as connection:  # commits do not wait for the disk
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    study = optuna.create_study(storage=storage, study_name="s")
    study.enqueue_trial({"x": 1})
    study.optimize(lambda t: t.suggest_int("x", 0, 3), n_trials=1)
    assert journal_mode(run) == "wal"
    assert optuna.load_study(study_name="s", storage=f"sqlite:///{run}").trials[0].value == 1


def test_the_search_logs_where_its_time_went(tmp_path, caplog):
    import logging
    import re
    from concurrent.futures import ThreadPoolExecutor

    class SlowCompiler(FakeCompiler):
        threads = ThreadPoolExecutor(3)

        def submit(self, requests):
            def compile_one():
                time.sleep(0.2)
                return Outcome(True, {"compile_s": 0.2})
            return [self.threads.submit(compile_one) for _ in requests]

    plan = make_plan(tmp_path, BIG_FP32, "random", budget=4)
    with caplog.at_level(logging.INFO, logger="vitune.tuner.pipeline"):
        loop.search(plan, FakeWorker(), seed_offset=0, compiler=SlowCompiler())
    lines = [re.search(r"(\d+) configs checked and timed in [\d.]+ s: GPU [\d.]+ s, waiting "
                       r"for compiles ([\d.]+) s, picking configs [\d.]+ s", r.getMessage())
             for r in caplog.records]
    lines = [(int(m[1]), float(m[2])) for m in lines if m]
    assert sum(n for n, _ in lines) == 4 and lines[0][1] >= 0.2


def test_configs_are_timed_as_their_compiles_finish(tmp_path):
    """The GPU does not wait for a round's slowest compile: each config is checked and
    timed as soon as its own compile is done, fastest compile first."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    class StaggeredCompiler(FakeCompiler):  # request i compiles in (jobs - i) x 0.3 s
        def __init__(self):
            super().__init__()
            self.threads = ThreadPoolExecutor(self.jobs)
            self.done_at = {}

        def submit(self, requests):
            def compile_one(i, cfg):
                time.sleep((len(requests) - i) * 0.3)
                self.done_at[cfg] = time.perf_counter()
                return Outcome(True, {"compile_s": 0.1})
            return [self.threads.submit(compile_one, i, KernelConfig.from_dict(r.config))
                    for i, r in enumerate(requests)]

    class ClockedWorker(FakeWorker):
        def call(self, req, timeout_s):
            if req.backend != PREPARE:
                self.timed_at = [*getattr(self, "timed_at", []), time.perf_counter()]
            return super().call(req, timeout_s)

    plan = make_plan(tmp_path, BIG_FP32, "random", budget=3)
    compiler, worker = StaggeredCompiler(), ClockedWorker()
    loop.search(plan, worker, seed_offset=0, compiler=compiler)
    by_compile = sorted(compiler.done_at, key=compiler.done_at.get)
    assert worker.ran == by_compile  # (the batch asked them in the other order)
    assert worker.timed_at[0] < max(compiler.done_at.values())
    compiler.threads.shutdown()


def test_the_rest_are_picked_while_the_first_configs_compile(tmp_path):
    """At a bucket's start the first config compiles while the others are picked, a few
    at a time, until the pipeline is full: the GPU's first trial waits for one compile,
    not for asking the sampler for a whole pipeline first."""
    from concurrent.futures import ThreadPoolExecutor

    class SlowCompiler(FakeCompiler):
        jobs = 9
        threads = ThreadPoolExecutor(9)

        def submit(self, requests):
            self.rounds.append((len(requests), time.perf_counter()))

            def compile_one():
                time.sleep(1.0)
                return Outcome(True, {"compile_s": 1.0})
            return [self.threads.submit(compile_one) for _ in requests]

    plan = make_plan(tmp_path, BIG_FP32, "random", budget=9)
    compiler = SlowCompiler()
    loop.search(plan, FakeWorker(), seed_offset=0, compiler=compiler)
    sizes = [n for n, _ in compiler.rounds]
    assert sizes[0] == 1 and max(sizes[1:]) <= loop.PICK_WHILE_WAITING and sum(sizes) == 9
    first_done = compiler.rounds[0][1] + 1.0
    assert all(at < first_done for _, at in compiler.rounds)  # all picked meanwhile


def test_picks_while_the_gpu_times_stop_once_it_has_the_next_config(tmp_path, monkeypatch):
    """Compiles that are cache hits: nothing to wait for, so the picks happen while the GPU
    times. A timing done before its picks, with the next config compiled, stops them after
    one call (PICK_WHILE_WAITING configs); before, the first timing of such a bucket waited
    for a whole pipeline's picks (1.2-2.0 s on the H100 and H200 against 0.15 s for a
    timing). Where the next config is still compiling, they go on filling the pipeline."""
    from concurrent.futures import ThreadPoolExecutor

    class CachedCompiler(EvenCompiler):
        jobs = 12

    class QuickWorker(FakeWorker):
        timing = False

        def send(self, req):
            self.timing = req.backend != PREPARE
            super().send(req)

        def ready(self):
            return True

        def receive(self, timeout_s):
            self.timing = False
            return super().receive(timeout_s)

    def picks_per_timing(compiler):
        worker, picked = QuickWorker(), []
        real_pick = loop._Picker.pick

        def pick(self, n):
            batch = real_pick(self, n)
            if worker.timing:
                picked.append((len(worker.ran), len(batch)))
            return batch

        monkeypatch.setattr(loop._Picker, "pick", pick)
        folder = tmp_path / type(compiler).__name__
        folder.mkdir()
        plan = make_plan(folder, BIG_FP32, "random", budget=12)
        loop.search(plan, worker, seed_offset=0, compiler=compiler)
        monkeypatch.undo()
        assert len(worker.ran) == 12
        per_timing = {}
        for timing, n in picked:
            per_timing[timing] = per_timing.get(timing, 0) + n
        return per_timing

    assert max(picks_per_timing(CachedCompiler()).values()) <= loop.PICK_WHILE_WAITING

    class FreshCompiler(CachedCompiler):
        """The first config is a cache hit; the others take a while to compile."""

        def submit(self, requests):
            self.pool = getattr(self, "pool", ThreadPoolExecutor(12))
            first = not getattr(self, "started", False)
            self.started = True

            def compile_one(wait_s):
                time.sleep(wait_s)
                return Outcome(True, {"compile_s": wait_s})
            return [self.pool.submit(compile_one, 0.0 if first and i == 0 else 2.0)
                    for i, _ in enumerate(requests)]

    # nothing compiled to time next: the picks go on past one call, filling the pipeline
    # (11 more configs: at most one call's worth picked while the first one compiled)
    assert picks_per_timing(FreshCompiler())[0] >= 11 - loop.PICK_WHILE_WAITING


def test_only_enough_configs_to_cover_a_compile_are_on_their_way(tmp_path):
    """A bucket starts with the whole pool compiling (its first picks are random anyway);
    then the pipeline keeps about compile time / GPU time per config (+2) on their way,
    so each pick misses as few results as keep the GPU busy."""
    from concurrent.futures import ThreadPoolExecutor

    class Compiler(FakeCompiler):
        jobs = 12
        threads = ThreadPoolExecutor(12)
        submitted = 0

        def submit(self, requests):
            self.submitted += len(requests)

            def compile_one():
                time.sleep(0.2)
                return Outcome(True, {"compile_s": 0.2})
            return [self.threads.submit(compile_one) for _ in requests]

    class Worker(FakeWorker):
        on_their_way = []  # configs picked and not yet on the GPU, at each config timed

        def receive(self, timeout_s):
            if self.sent.backend != PREPARE:
                time.sleep(0.1)
                self.on_their_way.append(compiler.submitted - len(self.ran) - 1)
            return super().receive(timeout_s)

    many = Workload("full d128", (256,), heads=1, head_dim=128, dtype="float16")
    plan = make_plan(tmp_path, many, "random", budget=40)
    compiler, worker = Compiler(), Worker()
    loop.search(plan, worker, seed_offset=0, compiler=compiler)
    assert len(worker.ran) == 40 and max(worker.on_their_way[:3]) == 12
    # 0.2 s compiles, 0.1 s a config on the GPU: 2 + 2 (plus timing jitter)
    assert max(worker.on_their_way[20:]) <= 5


def test_a_result_is_written_while_the_next_config_is_timed(tmp_path):
    """The GPU does not wait for the study's commits: trial k is told after config k+1 is
    handed to the worker, and every trial is told by the end of the round."""
    class WatchingWorker(FakeWorker):
        told_when_sent = []

        def send(self, req):
            if req.backend != PREPARE:
                study = optuna.load_study(study_name="s", storage=plan.storage)
                self.told_when_sent.append(sum(t.state.is_finished() and "wall_s" in t.user_attrs
                                               for t in study.trials))
            super().send(req)

    plan = make_plan(tmp_path, BIG_FP32, "random", budget=4)
    worker = WatchingWorker()
    compiler = EvenCompiler()
    compiler.jobs = 4  # one round
    loop.search(plan, worker, seed_offset=0, compiler=compiler)
    assert worker.told_when_sent == [0, 0, 1, 2]  # (k+1's send comes before k's commits)
    timed = [t for t in trials(plan) if loop.trial_ran(t)]
    assert len(timed) == 4 and all(t.state.name == "COMPLETE" and t.value > 0
                                   and {"wall_s", "compile_s", "median_ms"} <= set(t.user_attrs)
                                   for t in timed)


def test_a_timed_result_is_kept_when_the_run_is_interrupted(tmp_path):
    class InterruptedWorker(FakeWorker):
        def receive(self, timeout_s):
            if len(self.ran) == 2:  # Ctrl-C while the third config is timed
                raise KeyboardInterrupt
            return super().receive(timeout_s)

    plan = make_plan(tmp_path, BIG_FP32, "random", budget=6)
    with pytest.raises(KeyboardInterrupt):
        loop.search(plan, InterruptedWorker(), seed_offset=0, compiler=EvenCompiler())
    assert sum(t.state.name == "COMPLETE" and loop.trial_ran(t) for t in trials(plan)) == 2


class EvenCompiler(FakeCompiler):
    def compile(self, requests):
        self.rounds.append(len(requests))
        return [Outcome(True, {"compile_s": 0.5}) for _ in requests]


def test_configs_in_flight_count_against_the_budget(tmp_path):
    """A process fills its compile pool only with what the budget leaves, counting its own
    configs in flight and those another process of this run is running."""
    plan = dataclasses.replace(make_plan(tmp_path, BIG_FP32, "random", budget=5),
                               since=time.time() - 5, searchers=2)
    study = optuna.load_study(study_name="s", storage=plan.storage)
    elsewhere = list(valid_configs(256, torch.float32, GPU.arch))[0]
    loop.ask_for(study, elsewhere, searcher=1)  # (never finishes)
    compiler, worker = EvenCompiler(), FakeWorker()
    loop.search(plan, worker, seed_offset=0, compiler=compiler)
    assert sum(compiler.rounds) == 4 == len(worker.ran) and elsewhere not in worker.ran


def test_the_window_kernel_is_searched_in_the_window_regime_only():
    full = Workload("full d80", (1024,) * 2, head_dim=80, dtype="float16")
    window = Workload("windows d80", (64,) * 20, head_dim=80, dtype="float16")
    assert not any(c.windows for c in loop.bucket_configs(full, GPU.arch))
    in_window = loop.bucket_configs(window, GPU.arch)
    assert any(c.windows for c in in_window) and any(not c.windows for c in in_window)
    win = next(c for c in in_window if c.windows)
    assert "window regime only" in loop.bucket_reason(win, full, GPU.arch)
    assert loop.bucket_reason(win, window, GPU.arch) is None


def test_a_tile_config_neighbours_its_window_kernel_form():
    """Flipping `windows` on a tile config gives the window config of its tiles (the
    canonical form), so the refining search can step from one kernel to the other."""
    window = Workload("windows d80", (64,) * 20, head_dim=80, dtype="float16")
    tile = KernelConfig(block_m=64, block_n=32, num_warps=4, num_stages=2, tma=True)
    fresh = set(loop.bucket_configs(window, GPU.arch))
    ran = {tile: optuna.trial.create_trial(value=1.0, params={}, distributions={})}
    near = loop.neighbours_of_best(ran, fresh, top=1, head_dim=80)
    assert dataclasses.replace(tile, block_n=64, heads_fastest=True, tma=False,
                               windows=True) in near
    assert all(c in fresh for c in near)


def test_last_picks_made_beside_another_process_keep_their_share_of_the_budget(tmp_path):
    """Two processes that pick their last configs at once both saw room for a full batch:
    looked at again once the trials exist, this one keeps its share of what the budget
    leaves (5 of 8 here: 10 ran, 8 + 8 running, budget 20, half the running are its own);
    the rest are failed unrun, not counted, and their configs count as untried again."""
    plan = dataclasses.replace(make_plan(tmp_path, BIG_FP32, "random", budget=20),
                               since=time.time() - 1, searchers=2)
    study = optuna.load_study(study_name="s", storage=plan.storage)
    configs = list(valid_configs(128, torch.float16, GPU.arch))[:26]  # (26 distinct)
    for cfg in configs[:10]:
        loop.tell(study, loop.ask_for(study, cfg), 1.0)
    for cfg in configs[10:18]:  # the other process's round, started meanwhile
        loop.ask_for(study, cfg, searcher=1)
    batch = [(loop.ask_for(study, cfg), cfg) for cfg in configs[18:26]]
    kept = loop.settle_picks(study, plan, batch, stale_after_s=600)
    assert kept == batch[:5]
    dropped = [t for t in study.get_trials() if t.user_attrs.get("not_run")]
    assert len(dropped) == 3 and all(t.state == optuna.trial.TrialState.FAIL for t in dropped)
    assert not any(loop.trial_ran(t) for t in dropped)
    seen = loop._Seen.of(study, 256, 600, plan.since)
    assert len(seen.ran) == 10 and seen.running_now == 13
    assert configs[24] not in seen.ran and configs[24] not in seen.running
    # nothing over the budget: the batch stays whole
    assert loop.settle_picks(study, dataclasses.replace(plan, budget=30), kept, 600) == kept


def test_two_processes_with_one_trial_left_never_both_drop_it(tmp_path):
    """One trial short of the budget and a trial each: cutting their picks down, both keep
    theirs (one over the budget) rather than both dropping and retrying forever."""
    plan = dataclasses.replace(make_plan(tmp_path, BIG_FP32, "random", budget=3),
                               since=time.time() - 1, searchers=2)
    study = optuna.load_study(study_name="s", storage=plan.storage)
    configs = list(valid_configs(128, torch.float16, GPU.arch))[:4]
    for cfg in configs[:2]:
        loop.tell(study, loop.ask_for(study, cfg), 1.0)
    loop.ask_for(study, configs[2], searcher=1)
    batch = [(loop.ask_for(study, configs[3]), configs[3])]
    assert loop.settle_picks(study, plan, batch, stale_after_s=600) == batch


def test_configs_picked_at_once_by_two_processes_never_run_twice(tmp_path):
    """Both processes picked from the same view: the refining neighbours are dealt
    (each takes every other one first), and a config both started anyway stays with the
    earlier trial; the later one is failed unrun and not counted."""
    configs = list(valid_configs(128, torch.float16, GPU.arch))[:6]
    assert loop.deal(configs, 0, 2)[:3] == configs[0::2]
    assert loop.deal(configs, 1, 2)[:3] == configs[1::2]
    assert sorted(map(str, loop.deal(configs, 1, 2))) == sorted(map(str, configs))
    assert loop.deal(configs, 0, 1) == configs

    plan = dataclasses.replace(make_plan(tmp_path, BIG_FP32, "random", budget=50),
                               since=time.time() - 1, searchers=2)
    study = optuna.load_study(study_name="s", storage=plan.storage)
    other = [(loop.ask_for(study, cfg, searcher=1), cfg) for cfg in configs[:3]]
    batch = [(loop.ask_for(study, cfg), cfg) for cfg in configs[2:5]]  # configs[2] twice
    assert loop.settle_picks(study, plan, batch, stale_after_s=600) == batch[1:]
    # the other process, settling after: its earlier trial of configs[2] stays
    assert loop.settle_picks(study, plan, other, stale_after_s=600) == other
    twice = [t for t in study.get_trials() if t.user_attrs.get("not_run")]
    assert [t.number for t in twice] == [batch[0][0].number]
    assert "at the same time" in twice[0].user_attrs["reason"]


@pytest.mark.gpu
def test_the_pipeline_on_a_gpu_with_real_compile_processes_and_trial_worker(tmp_path):
    """The whole way of a config on a GPU: compiled in a compile process, checked and
    timed in the trial worker as its compile finishes, written while the next is timed."""
    from vitune.runtime.gpu import detect_gpu
    from vitune.tuner.isolation import IsolatedWorker
    from vitune.tuner.trial import WARM_UP

    gpu = detect_gpu()
    w = Workload("gpu pipeline", (256, 128), heads=2, head_dim=64, dtype="float16")
    storage = f"sqlite:///{tmp_path / 's.db'}"
    optuna.create_study(storage=storage, study_name="s", direction="maximize")
    plan = loop.SearchPlan(w, gpu, "s", "tpe", storage, budget=6, timeout_s=None, seed=0,
                           rep_ms=5, trial_timeout_s=120)
    with IsolatedWorker("vitune.tuner.trial:run_trial", {}, WARM_UP) as worker, \
            CompilePool(3, gpu.capability) as compiler:
        loop.search(plan, worker, seed_offset=0, compiler=compiler)
    ran = [t for t in trials(plan) if loop.trial_ran(t)]
    assert len(ran) == 6 and not [t for t in trials(plan) if t.state.name == "RUNNING"]
    complete = [t for t in ran if t.state.name == "COMPLETE"]
    assert complete and all(t.value > 0 and {"compile_s", "wall_s", "median_ms"}
                            <= set(t.user_attrs) for t in complete)
    assert all(t.user_attrs["reason"] for t in ran if t.state.name == "FAIL")
