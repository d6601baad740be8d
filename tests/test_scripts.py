"""The maintained scripts (scripts/README.md): the sweep table kept as the replay oracle, its
export from a sweep's study, the replay of the search loop against it, the search-against-
sweep comparison, and the GPU lane's stage check (its GPU parts run on a GPU machine)."""

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from vitune.bench.presets import TUNE_PRESETS, bucket_of
from vitune.kernels.vision_attn.space import KernelConfig
from vitune.runtime.gpu import identity_for_key
from vitune.tuner import search_loop as loop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
SWEEP = ROOT / "data" / "sweeps" / "h100-qwen2.5-vl.jsonl"
WINDOW = "d80-bfloat16-window-L64"


def test_kept_sweep_covers_the_current_h100_space_of_every_preset_bucket():
    """A config the sweep lacks counts as a failed trial in a replay: an oracle that no
    longer covers the space misleads."""
    from sweep_table import load_sweep

    sweep = load_sweep(str(SWEEP))
    hopper = identity_for_key("h100").arch
    for w in TUNE_PRESETS["qwen2.5-vl"]:
        bucket = sweep[bucket_of(w).key]
        valid = set(loop.bucket_configs(w, hopper))
        assert len(valid & set(bucket.rates)) >= 0.9 * len(valid), bucket_of(w).key
        assert bucket.ran == len(bucket.rates) and bucket.best > 0


def add_trial(study, cfg: KernelConfig, value=None, state="COMPLETE", **attrs):
    study.add_trial(optuna.trial.create_trial(
        params=cfg.to_dict(), distributions=loop.DISTRIBUTIONS, value=value,
        state=getattr(optuna.trial.TrialState, state), user_attrs=attrs))


def window_cfg(warps: int, stages: int, **changes) -> KernelConfig:
    fields = dict(block_m=64, block_n=64, num_warps=warps, num_stages=stages,
                  heads_fastest=True, windows=True) | changes
    return KernelConfig(**fields)


def test_export_keeps_each_config_that_ran_once_in_its_canonical_form(tmp_path):
    from sweep_table import load_sweep, main

    url = f"sqlite:///{tmp_path / 'sweep.db'}"
    study = optuna.create_study(storage=url, study_name=f"h100:{WINDOW}:abc",
                                direction="maximize")
    add_trial(study, window_cfg(4, 2, block_n=32, tma=True), 70.0)  # (canonical: n64, no tma)
    add_trial(study, window_cfg(4, 2), 69.0, repeat_of=0)
    add_trial(study, window_cfg(4, 3), 0.0, rejected_by_rules=True)
    add_trial(study, window_cfg(8, 2), state="FAIL", reason="out of resources")
    out = tmp_path / "table.jsonl"
    assert main([url, "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["status"], r["gpu"], r["bucket"], r["kernel"]) for r in rows] == [
        ("ok", "h100", WINDOW, "abc"), ("failed", "h100", WINDOW, "abc")]
    assert rows[0]["config"] == window_cfg(4, 2).to_dict() and rows[0]["tflops"] == 70.0
    assert rows[1]["reason"] == "out of resources"
    bucket = load_sweep(str(out))[WINDOW]
    assert bucket.ran == 2 and bucket.rates == {window_cfg(4, 2): 70.0}


def test_a_table_line_that_is_not_a_row_is_named(tmp_path):
    from sweep_table import load_sweep

    table = tmp_path / "t.jsonl"
    table.write_text(SWEEP.read_text().splitlines()[0] + '\n{"bucket": "x"}\n')
    with pytest.raises(ValueError, match="t.jsonl: line 2 is not a sweep table row"):
        load_sweep(str(table))


def test_replay_finds_one_of_the_sweeps_rates_and_puts_the_tuner_back():
    from replay_search import replay, replaying
    from sweep_table import load_sweep

    rates = load_sweep(str(SWEEP))[WINDOW].rates
    workload = next(w for w in TUNE_PRESETS["qwen2.5-vl"] if bucket_of(w).key == WINDOW)
    saved = (loop.open_storage, loop.REFINE_SHARE)
    with replaying(refine_share=0.0):
        assert loop.REFINE_SHARE == 0.0
        found = replay(workload, identity_for_key("h100"), rates, "tpe", seed=0, budget=40,
                       jobs=4)
    assert found in rates.values() and found >= sorted(rates.values())[len(rates) // 2]
    assert (loop.open_storage, loop.REFINE_SHARE) == saved


@pytest.mark.parametrize("crowned,met", [(0, True), (-1, False)])
def test_compare_judges_the_crowned_config_at_the_sweeps_rate(crowned, met, tmp_path, capsys):
    """The sweep's best is 80; the search ran two of eight configs (25%) and crowned
    the best (target met) or the worst (20% behind: missed)."""
    from compare_search import main

    configs = [window_cfg(w, s, head_split=split) for w in (4, 8) for s in (2, 3)
               for split in (True, False)]
    rates = [80.0, 75.0, 70.0, 70.0, 70.0, 70.0, 70.0, 64.0]
    table = tmp_path / "sweep.jsonl"
    table.write_text("".join(json.dumps({"bucket": WINDOW, "config": c.to_dict(),
                                         "status": "ok", "tflops": r}) + "\n"
                             for c, r in zip(configs, rates, strict=True)))
    url = f"sqlite:///{tmp_path / 'search.db'}"
    study = optuna.create_study(storage=url, study_name=f"h100:{WINDOW}:abc",
                                direction="maximize")
    add_trial(study, configs[crowned], rates[crowned])
    add_trial(study, configs[1], 75.0)
    study.set_user_attr("crown", {"winner": configs[crowned].to_dict()})
    assert main([str(table), url]) == (0 if met else 1)
    out = capsys.readouterr().out
    assert ("target met" if met else "target missed") in out
    assert configs[crowned].short() in out and " 25%" in out


def test_gpu_lane_refuses_an_unknown_stage_before_it_starts(tmp_path):
    run = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_lane.sh")], cwd=ROOT,
                         env={"PATH": "/usr/bin:/bin", "STAGES": "tests,bench",
                              "OUT": str(tmp_path / "out")},
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "unknown stage 'bench'" in run.stderr
    assert not (tmp_path / "out").exists()


def test_maintained_scripts_are_the_ones_the_readme_lists():
    listed = (ROOT / "scripts" / "README.md").read_text()
    scripts = sorted(p.name for p in (ROOT / "scripts").iterdir() if p.suffix in (".py", ".sh"))
    assert scripts and all(f"`{name}`" in listed for name in scripts)
