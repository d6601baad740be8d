"""The ask-check-compile-run-tell loop of one search process on one bucket's study.

Every proposal of the sampler is told back, so the sampler learns from it:
- a config the validity rules reject is told 0 TFLOP/s (it never compiles; the sampler
  learns to avoid that corner of the space) and marked `rejected_by_rules`;
- a config this study already ran (samplers repeat categorical points) is told the value it
  got then and marked `repeat_of`, instead of being compiled and timed again;
- a new valid config is compiled (as soon as a compile process is free, see pipeline),
  checked against the reference and timed: COMPLETE with its TFLOP/s, or FAIL with the
  reason.
Only the last kind counts against the budget. Before the sampler proposes, the plan's
`first` configs run (the built-in default, known winners); the last REFINE_SHARE of the
budget goes to neighbours of the fastest; after a run of proposals that bring nothing new,
random configs that have not run yet are picked instead, so no sampler can stall the
search (nor keep the GPU waiting while it proposes repeats); when every valid config has
run, the bucket's space is exhausted and the search stops. An exhaustive sweep (`grid`)
runs the first configs, then every other valid config in random order, asking no sampler.
"""

from __future__ import annotations

import datetime
import logging
import random
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace

import optuna

from vitune.kernels.vision_attn.space import SEARCH_SPACE, KernelConfig
from vitune.tuner.bucket_board import Seat
from vitune.tuner.isolation import IsolatedWorker
from vitune.tuner.pipeline import Pipeline, tell
from vitune.tuner.plan import SearchPlan, bucket_configs, bucket_reason
from vitune.tuner.studies import open_storage, trial_ran

log = logging.getLogger(__name__)
RANDOM_AFTER = 10  # proposals in a row that bring nothing new before random new configs
# The last REFINE_SHARE of a sampled search's budget tries the untried one-field neighbours
# of the REFINE_TOP fastest configs (fastest first) instead of the sampler's proposals: the
# sampler opens, a best-first local search finishes. Replayed against the window sweeps (H100,
# H200; rounds of 14-16, 40 seeds), where a single config is within 3% of the best: TPE
# alone found it in 45-65% of seeds; with a share of 0.5, 68-92%; 0.7, 88-98%; 0.9, 100%,
# and 100% on the full-attention buckets (docs/decisions.md, "Refining around the best").
REFINE_SHARE = 0.9
REFINE_TOP = 15
PICK_WHILE_WAITING = 4  # configs picked at a time while the GPU waits for a compile or times
# The search space as Optuna sees it: every field categorical
DISTRIBUTIONS = {name: optuna.distributions.CategoricalDistribution(list(choices))
                 for name, choices in SEARCH_SPACE.items()}


def tpe_startup_trials(budget: int | None) -> int:
    """Random trials before TPE models the space: a third of the budget, 10 to 30. Replayed
    against the H100 sweep (scripts/replay_search.py, 20 seeds, 98 trials): 30 instead of
    Optuna's 10 took the window bucket from 45% to 65% of seeds within 3% of the sweep's
    best, 2 x 5476 from 55% to 70%, and kept the other two at 100%."""
    return 10 if budget is None else max(10, min(30, budget // 3))


def make_sampler(name: str, seed: int, budget: int | None = None) -> optuna.samplers.BaseSampler:
    """The named Optuna sampler; `budget` (trials that will run) sizes TPE's random start."""
    if name == "tpe":
        with warnings.catch_warnings():  # group=True is marked experimental; it is what we want
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True,
                                              n_startup_trials=tpe_startup_trials(budget))
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        return optuna.samplers.GridSampler({k: list(v) for k, v in SEARCH_SPACE.items()},
                                           seed=seed)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    raise ValueError(f"unknown sampler {name!r}")


@dataclass
class _Seen:
    """What the study holds: configs that ran (with the first trial that ran each), configs
    running elsewhere (with the earliest trial running each; how many of them this run's
    search processes started)."""

    ran: dict[KernelConfig, optuna.trial.FrozenTrial]
    running: dict[KernelConfig, int]
    running_now: int
    best: float | None

    @classmethod
    def of(cls, study: optuna.Study, head_dim: int, stale_after_s: float,
           since: float | None = None) -> _Seen:
        ran, running, running_now, best = {}, {}, 0, None
        now = datetime.datetime.now()
        this_run = None if since is None else datetime.datetime.fromtimestamp(since)
        for t in study.get_trials(deepcopy=False):  # (in trial number order)
            if not t.params:
                continue
            cfg = KernelConfig(**t.params).canonical(head_dim)
            if trial_ran(t):
                ran.setdefault(cfg, t)
                if t.state == optuna.trial.TrialState.COMPLETE:
                    best = t.value if best is None else max(best, t.value)
            elif (t.state == optuna.trial.TrialState.RUNNING and t.datetime_start
                  and (now - t.datetime_start).total_seconds() < stale_after_s):
                running.setdefault(cfg, t.number)  # (older: left over from a killed run)
                if this_run is not None and t.datetime_start >= this_run:
                    running_now += 1
        return cls(ran, running, running_now, best)

    def taken_before(self, cfg: KernelConfig, number: int) -> bool:
        """Whether a trial earlier than trial `number` ran `cfg` or is running it."""
        return ((cfg in self.ran and self.ran[cfg].number < number)
                or self.running.get(cfg, number) < number)


def search(plan: SearchPlan, worker: IsolatedWorker, seed_offset: int, compiler=None,
           between_trials: Callable[[], None] | None = None, seat: Seat | None = None
           ) -> None:
    """Run trials on the plan's study until it holds `plan.budget` trials that ran, the
    plan's time is up or every valid config has run. Any number of processes may run this on
    one study. Configs are picked as compile processes become free (vitune.tuner.pipeline)
    and timed one by one on this process's GPU as their compiles finish; the next ones are
    picked while the GPU times one. `between_trials` runs whenever the GPU is free (other
    work for it, e.g. crowning a bucket searched before). With a `seat` (vitune.tuner.bucket_board),
    the processes on the bucket are counted live, progress is reported there, and once
    another process has finished the bucket no more configs are picked."""
    deadline = None if plan.timeout_s is None else time.time() + plan.timeout_s
    # (this process's own trials in flight count against the budget: they are this run's)
    plan = plan if plan.since is not None else replace(plan, since=time.time())
    log.info("%s: searching (searcher %d%s)", plan.study_name, seed_offset,
             f", joining {seat.searchers() - 1} more" if seat and seat.rank else "")
    study = optuna.load_study(study_name=plan.study_name, storage=open_storage(plan.storage),
                              sampler=make_sampler(plan.sampler, plan.seed + seed_offset,
                                                   plan.budget))
    pipe = Pipeline(study, plan, worker, compiler)
    picker = _Picker(study, plan, seed_offset, pipe.size, seat)

    def over() -> bool:
        return ((deadline is not None and time.time() >= deadline)
                or (seat is not None and seat.closed()))

    def pick(at_most: int | None = None) -> bool:
        """Fill the pipeline (with at most `at_most` configs); whether any were added."""
        room = pipe.room()
        if not room or over():
            return False
        picking = time.perf_counter()
        picks = picker.pick(min(room, at_most or room))
        pipe.add(picks, time.perf_counter() - picking)
        return bool(picks)

    try:
        while True:
            if between_trials is not None:
                between_trials()
            # An empty pipeline starts its first compile at once and picks the rest while
            # it compiles or the GPU times (asking for 14-16 configs took 1-3 s at a
            # bucket's start); nothing else is picked while the GPU is idle.
            if pipe.empty():
                pick(at_most=1)
            if pipe.empty():
                if picker.done or over():
                    break
                continue  # (another process took every config picked: pick again)
            pipe.time_next(while_waiting=lambda: pick(at_most=PICK_WHILE_WAITING),
                           while_timing=lambda: pick(at_most=PICK_WHILE_WAITING))
    finally:  # (also on Ctrl-C: what was measured is kept)
        pipe.write_pending()
    pipe.log_progress()


class _Picker:
    """Picks a search process's next configs: the plan's first ones, then the sampler's
    proposals, in the refining phase the neighbours of the fastest; random untried configs
    where the sampler brings nothing new. Each pick is a trial created RUNNING."""

    def __init__(self, study: optuna.Study, plan: SearchPlan, seed_offset: int,
                 retry_after: int, seat: Seat | None = None) -> None:
        self._study, self._plan, self._searcher = study, plan, seed_offset
        self._retry_after, self._seat = retry_after, seat
        self._valid = bucket_configs(plan.workload, plan.gpu.arch)
        self._rng = random.Random(plan.seed + seed_offset)
        self._stale_after = plan.trial_timeout_s * 2 + 60
        self._nothing_new = 0  # sampler proposals in a row that brought nothing new
        self._picked = 0  # since the sampler was last given a new try
        self.done = False  # the budget is used up or every valid config has run

    def pick(self, n: int) -> list[tuple[optuna.Trial, KernelConfig]]:
        """Up to n new configs (fewer at the bucket's end, none once it is done)."""
        plan, w = self._plan, self._plan.workload
        seen = _Seen.of(self._study, w.head_dim, self._stale_after, plan.since)
        if self._seat is not None:
            self._seat.report(len(seen.ran), plan.budget, seen.best)
        searchers, rank = (self._seat.searchers(), self._seat.rank) if self._seat \
            else (plan.searchers, self._searcher)
        # Trials another search process is running count against the budget too: without
        # them, every process would fill its pipeline at the end and overshoot it.
        room = plan.budget - len(seen.ran) - seen.running_now
        fresh = [c for c in self._valid if c not in seen.ran and c not in seen.running]
        if room <= 0 or not fresh:
            self.done = True
            return []
        if self._picked >= self._retry_after:  # the sampler, which has learnt more, gets
            self._picked = self._nothing_new = 0  # a new try every pipeline's worth
        refining = plan.sampler != "grid" and len(seen.ran) >= plan.budget * (1 - REFINE_SHARE)
        fresh_set = set(fresh)
        chosen = [c for c in plan.first if c in fresh_set]
        chosen += neighbours_of_best(seen.ran, fresh_set, REFINE_TOP, w.head_dim) \
            if refining else []
        chosen = deal(chosen, rank, searchers)
        batch: list[tuple[optuna.Trial, KernelConfig]] = []
        while len(batch) < min(n, room, len(fresh)):
            taken = {cfg for _, cfg in batch}
            cfg = next((c for c in chosen if c not in taken), None)
            # A sweep takes every valid config, in random order, without asking the grid
            # sampler (it proposes the whole space, invalid points too: 2304 asks for 490
            # valid configs, each slower than the last). A stalled sampler: random too.
            if cfg is None and (plan.sampler == "grid" or self._nothing_new >= RANDOM_AFTER):
                cfg = self._rng.choice([c for c in fresh if c not in taken])
            if cfg is not None:
                batch.append((ask_for(self._study, cfg, self._searcher), cfg))
            elif (proposed := self._ask(seen, taken)) is not None:
                batch.append(proposed)
        self._picked += len(batch)
        if searchers > 1:
            batch = settle_picks(self._study, plan, batch, self._stale_after)
        return batch

    def _ask(self, seen: _Seen, taken: set[KernelConfig]
             ) -> tuple[optuna.Trial, KernelConfig] | None:
        """The sampler's proposal, if it is a valid config not yet run nor picked; else
        the trial is told at once (0 for a config the rules reject, a repeat's value)."""
        w = self._plan.workload
        trial = self._study.ask(DISTRIBUTIONS)
        trial.set_user_attr("searcher", self._searcher)
        cfg = KernelConfig(**trial.params).canonical(w.head_dim)
        reason = bucket_reason(cfg, w, self._plan.gpu.arch)
        if reason is None and not (cfg in seen.ran or cfg in seen.running or cfg in taken):
            self._nothing_new = 0
            return trial, cfg
        self._nothing_new += 1
        if reason is not None:
            trial.set_user_attr("rejected_by_rules", True)  # never compiled
            trial.set_user_attr("reason", reason)
            tell(self._study, trial, 0.0)
        else:
            _tell_repeat(self._study, trial, seen.ran.get(cfg))
        return None


def settle_picks(study: optuna.Study, plan: SearchPlan,
                 batch: list[tuple[optuna.Trial, KernelConfig]], stale_after_s: float
                 ) -> list[tuple[optuna.Trial, KernelConfig]]:
    """Search processes that pick configs at the same time pick them from the same view
    of the study (asking for a trial takes tens of milliseconds). Looked at again once
    this process's new trials exist:
    - a config another process started too stays with the earlier trial (2 x H200: up to
      14 trials a bucket ran twice, both processes refining the same neighbours);
    - at the bucket's end, where together they overshoot the budget (the window bucket
      ran 140 trials of 128 on 2 x H100), this process keeps its share (in proportion to
      its running trials) of what the budget leaves. Shares round the cut down: never
      below the budget (processes that all cut one trial of a last one would leave it to
      none, again and again).
    The rest are told FAIL, marked `not_run`, never compiled and not counted; configs cut
    for the budget are free again."""
    seen = _Seen.of(study, plan.workload.head_dim, stale_after_s, plan.since)
    twice = [(trial, cfg) for trial, cfg in batch if seen.taken_before(cfg, trial.number)]
    _drop(study, plan, twice, "another search process started this config at the same time")
    batch = [item for item in batch if item not in twice]
    running_now = seen.running_now - len(twice)
    over = len(seen.ran) + running_now - plan.budget
    if over <= 0 or not running_now:
        return batch
    # (the configs chosen first, then the sampler's, come first: they stay)
    cut = min(len(batch), over * len(batch) // running_now)
    _drop(study, plan, batch[len(batch) - cut:],
          "over the budget: other search processes took its room at the same time")
    return batch[:len(batch) - cut]


def _drop(study: optuna.Study, plan: SearchPlan,
          dropped: list[tuple[optuna.Trial, KernelConfig]], reason: str) -> None:
    for trial, _ in dropped:
        trial.set_user_attr("not_run", True)
        trial.set_user_attr("reason", reason)
        tell(study, trial, state=optuna.trial.TrialState.FAIL)
    if dropped:
        log.info("%s: %d trials dropped before compiling: %s", plan.study_name,
                 len(dropped), reason)


def ask_for(study: optuna.Study, cfg: KernelConfig, searcher: int = 0) -> optuna.Trial:
    """A new trial of `cfg`, created RUNNING. Not enqueue_trial + ask: on SQLite two
    processes can both take the same waiting trial (Optuna's row lock is a no-op there;
    it happened on two GPUs), and the first to finish it breaks the other's updates."""
    params = cfg.to_dict()
    # fixed_params, as enqueue_trial marks a trial: a grid sampler then leaves it alone
    template = optuna.trial.create_trial(state=optuna.trial.TrialState.RUNNING, params=params,
                                         distributions=DISTRIBUTIONS,
                                         user_attrs={"searcher": searcher},
                                         system_attrs={"fixed_params": params})
    storage = study._storage  # noqa: SLF001 (Optuna has no public way to add a running trial)
    trial_id = storage.create_new_trial(study._study_id, template_trial=template)  # noqa: SLF001
    return optuna.Trial(study, trial_id)


def deal(configs: list[KernelConfig], searcher: int, searchers: int) -> list[KernelConfig]:
    """This searcher's turn of the configs first (every searchers-th, from its index), then
    the others': processes picking from the same view take different configs."""
    if searchers <= 1:
        return configs
    own = configs[searcher % searchers::searchers]
    taken = set(own)
    return own + [c for c in configs if c not in taken]


def neighbours_of_best(ran: dict[KernelConfig, optuna.trial.FrozenTrial],
                       fresh: set[KernelConfig], top: int,
                       head_dim: int | None = None) -> list[KernelConfig]:
    """Configs that have not run and differ in one field from one of the `top` fastest
    that ran (the fastest's first), in canonical form where head_dim is given (so a tile
    config's neighbour in the window kernel is the window config of its tiles)."""
    rates = {cfg: t.value for cfg, t in ran.items()
             if t.state == optuna.trial.TrialState.COMPLETE and t.value}
    out: list[KernelConfig] = []
    for cfg in sorted(rates, key=rates.get, reverse=True)[:top]:
        for name, choices in SEARCH_SPACE.items():
            for value in choices:
                near = replace(cfg, **{name: value})
                near = near if head_dim is None else near.canonical(head_dim)
                if near in fresh and near not in out:
                    out.append(near)
    return out


def _tell_repeat(study: optuna.Study, trial: optuna.Trial,
                 earlier: optuna.trial.FrozenTrial | None) -> None:
    """Tell a repeated config what it got the first time (0 if it failed then); a config
    still running elsewhere is told FAIL (no value yet)."""
    if earlier is None:
        trial.set_user_attr("repeat_of", -1)
        tell(study, trial, state=optuna.trial.TrialState.FAIL)
        return
    trial.set_user_attr("repeat_of", earlier.number)
    ok = earlier.state == optuna.trial.TrialState.COMPLETE
    tell(study, trial, earlier.value if ok else 0.0)
