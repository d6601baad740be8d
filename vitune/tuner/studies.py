"""Study plumbing of `vitune tune`: the storage that keeps every trial (SQLite, a journal
file or a database server), the study names (GPU:bucket:kernel hash, so trials of an older
kernel never mix with a newer one's), and what is read back out of a run's studies: which
trials ran, their counts, the configs the crowns chose."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import optuna

from vitune.kernels.vision_attn.identity import kernel_hash
from vitune.kernels.vision_attn.space import KernelConfig
from vitune.runtime.schema import bucket_config, bucket_key, load_config_file


def study_name(prefix: str, bucket: str) -> str:
    """The study of one bucket: GPU (or the run's prefix):bucket key:kernel hash."""
    return f"{prefix}:{bucket}:{kernel_hash()}"


def study_bucket(name: str) -> str:
    """The bucket key of a study named by study_name."""
    return name.split(":")[1]


def open_storage(url: str, read_only: bool = False) -> str | optuna.storages.BaseStorage:
    """An Optuna RDB URL as is (SQLite, for a tuning run, in write-ahead-log mode; a reader
    leaves the file as it is); `journal:PATH` as a journal file (several processes may
    append to it, no database server needed)."""
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(url.removeprefix("journal:")))
    if url.startswith("sqlite:") and not read_only:
        return _sqlite_storage(url)
    if url.startswith("sqlite:///") and not os.path.isfile(url.removeprefix("sqlite:///")):
        # (a reader must not create an empty database where a path was mistyped)
        raise ValueError(f"{url}: no such SQLite file")
    return storage_url(url)


def check_storage(url: str) -> None:
    """Open the storage once (creating its schema), or raise ValueError in one sentence:
    a missing driver, a server out of reach or a malformed URL must not surface as a
    chained traceback from inside a run."""
    import sqlalchemy.exc

    try:
        storage = open_storage(url)
        if isinstance(storage, str):
            storage = optuna.storages.RDBStorage(storage)
        storage.get_all_studies()
    except (ImportError, OSError, ValueError, sqlalchemy.exc.SQLAlchemyError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ValueError(f"--storage {url} cannot be opened: {reason}") from None


def storage_url(url: str) -> str:
    """`postgresql://` with the PostgreSQL driver that is installed: SQLAlchemy 2.1 takes
    it to mean psycopg 3, and `vitune[postgres]` installs psycopg2."""
    import importlib.util

    if (url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None
            and importlib.util.find_spec("psycopg2") is not None):
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url


@contextlib.contextmanager
def _creation_lock(url: str):
    """An exclusive lock beside a SQLite file while its schema may be created: Optuna's
    schema creation is not safe against another process doing the same at the same moment
    (UNIQUE constraint failed: alembic_version, table already exists)."""
    import fcntl

    path = url.removeprefix("sqlite:///")
    if not path or path == url or path.startswith(":memory:"):
        yield
        return
    with open(f"{path}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _sqlite_storage(url: str) -> optuna.storages.RDBStorage:
    """SQLite with a write-ahead log: readers (every process's sampler reads all trials)
    no longer wait for another process's writes, and a trial's writes take about half as
    long (20 vs 40 ms for ask, two attributes and tell, measured on a CPU box). A killed
    process loses nothing it committed: the log is replayed when the file is next opened.
    Commits append to the log without waiting for the disk (synchronous=NORMAL): what a
    process committed is in the operating system's hands, so a SIGKILL loses none of it;
    only a power cut or kernel crash could take back the last commits (the file stays
    consistent). Waiting for the disk held the write lock that every search process
    shares through each of a trial's dozen commits (an ask writes each parameter)."""
    import sqlite3

    from sqlalchemy import event

    with _creation_lock(url):
        storage = optuna.storages.RDBStorage(url)

    def write_ahead(connection, _record) -> None:
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.OperationalError:  # a read-only file: read it as it is
            pass

    event.listen(storage.engine, "connect", write_ahead)
    storage.engine.dispose()  # (the connections opened while creating the schema)
    return storage


def trial_ran(t: optuna.trial.FrozenTrial) -> bool:
    """A finished trial whose config was compiled, checked and timed here (not a rule
    rejection, not a repeat of an earlier trial)."""
    return (t.state.is_finished() and not t.user_attrs.get("rejected_by_rules")
            and "repeat_of" not in t.user_attrs and not t.user_attrs.get("not_run"))


def release_orphans(study: optuna.Study, searcher: int, why: str) -> int:
    """Trials search process `searcher` left RUNNING when it died, told FAIL and marked
    not run: they never ran to the end, so they count against no budget (the bucket's
    budget is run in full by those still on it) and in no total. How many there were."""
    released = 0
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if t.user_attrs.get("searcher") != searcher:
            continue
        trial = optuna.trial.Trial(study, t._trial_id)  # (to set attributes before telling)
        trial.set_user_attr("not_run", True)
        trial.set_user_attr("reason", why)
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        released += 1
    return released


def trial_counts(trials: list[optuna.trial.FrozenTrial]) -> dict[str, int]:
    """A bucket's trial counts for its YAML entry, of finished trials only: one a killed
    process left RUNNING (or WAITING) never ran to the end and counts nowhere."""
    finished = [t for t in trials if t.state.is_finished()]
    ran = [t for t in finished if trial_ran(t)]
    complete = sum(t.state == optuna.trial.TrialState.COMPLETE for t in ran)
    return {"total": len(finished), "ran": len(ran), "complete": complete,
            "failed": len(ran) - complete,
            "rejected": sum(bool(t.user_attrs.get("rejected_by_rules")) for t in finished),
            "repeats": sum("repeat_of" in t.user_attrs for t in finished)}


def bucket_studies(url: str) -> Iterator[tuple[str, optuna.Study]]:
    """Every study of one `vitune tune` run's storage with its bucket key (study names are
    GPU:bucket:kernel hash, as study_name makes them)."""
    storage = open_storage(url, read_only=True)
    for summary in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        yield study_bucket(summary.study_name), study


def crowned_configs(url: str, winners_yaml: str | None = None) -> dict[str, KernelConfig]:
    """bucket key -> the config a `vitune tune` run crowned there: from its studies (the
    crown records it) or, for runs older than that, from the configs YAML it wrote."""
    out = {}
    if winners_yaml:
        for entry in load_config_file(winners_yaml).get("buckets", []):
            if cfg := bucket_config(entry):
                key = bucket_key(entry["head_dim"], entry["dtype"], entry["regime"],
                                 entry["seqlen"], entry.get("rotary", False))
                out[key] = cfg
    for bucket, study in bucket_studies(url):
        if winner := study.user_attrs.get("crown", {}).get("winner"):
            out[bucket] = KernelConfig.from_dict(winner)
    return out
