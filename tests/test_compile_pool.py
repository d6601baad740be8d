"""The search loop's batches: configs are compiled together ahead of timing, a compile
failure is a failed trial with its reason, and rule rejections do not use up the budget."""

import optuna
import pytest
import torch

from vitune.runtime.gpu import interpreter_identity
from vitune.tuner import search
from vitune.tuner.compile_pool import CompilePool, default_compile_jobs
from vitune.tuner.isolation import IsolatedWorker, Outcome
from vitune.tuner.presets import TINY

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="CPU lane")


class FakeCompiler:
    """Stands in for CompilePool: records batch sizes, fails every second request."""

    jobs = 3

    def __init__(self):
        self.batches = []

    def compile(self, requests):
        self.batches.append(len(requests))
        return [Outcome(False, reason="out of resources: shared memory") if i % 2 else
                Outcome(True, {"compile_s": 0.5}) for i in range(len(requests))]


def test_search_compiles_in_batches_and_records_compile_failures(tmp_path):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    opts = search.TuneOptions(trials=5, sampler="random", storage=storage)
    optuna.create_study(storage=storage, study_name="s", direction="maximize")
    plan = search.SearchPlan(TINY[1], interpreter_identity(), "s", "random", budget=5,
                             deadline=None, opts=opts)
    compiler = FakeCompiler()
    with IsolatedWorker("vitune.tuner.trial:run_trial", {"TRITON_INTERPRET": "1"}) as worker:
        search._search(plan, worker, seed_offset=0, on_trial=None, compiler=compiler)
    study = optuna.load_study(study_name="s", storage=storage)
    assert max(compiler.batches) <= 3 and sum(compiler.batches) == 5
    ran = [t for t in study.trials if not t.user_attrs.get("rejected_by_rules")]
    assert len(ran) == 5  # the budget counts trials that ran, not rule rejections
    failed = [t for t in ran if t.state == optuna.trial.TrialState.FAIL]
    assert failed and all(t.user_attrs["reason"].startswith("compile: out of resources")
                          for t in failed)
    done = [t for t in ran if t.state == optuna.trial.TrialState.COMPLETE]
    assert done and all(t.value > 0 and t.user_attrs["compile_s"] == 0.5 for t in done)
    assert len(done) + len(failed) == 5


def test_compile_pool_refuses_more_requests_than_processes():
    with CompilePool(jobs=1) as pool:
        with pytest.raises(ValueError, match="2 requests for 1 compile processes"):
            pool.compile([None, None])
    assert 1 <= default_compile_jobs() <= 8
