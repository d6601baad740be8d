"""`vitune validate` and `vitune show`, and the import-weight rule of the runtime path."""

import subprocess
import sys

import pytest

from vitune.cli import main


def test_validate_exits_nonzero_with_the_precise_fault(tmp_path, capsys):
    good = tmp_path / "h100.yaml"
    good.write_text("schema_version: 1\ngpu: h100\nbuckets: []\n")
    bad = tmp_path / "h200.yaml"
    bad.write_text("schema_version: 1\ngpu: h200\nbuckets:\n- {head_dim: 80, dtype: bfloat16,"
                   " regime: full, seqlen: 64, backend: cuda}\n")
    assert main(["validate", str(good)]) == 0
    assert main(["validate", str(good), str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}: buckets[0].backend: 'cuda' is not one of" in err


def test_show_names_level_for_a_named_gpu(capsys):
    assert main(["show", "--gpu", "gb200", "--preset", "qwen2.5-vl"]) == 0
    out = capsys.readouterr().out
    assert "selector on gb200 (blackwell)" in out and "d80-bfloat16-window-L64" in out


def test_show_reads_the_shipped_h100_file(capsys):
    """The shipped file is found for an H100, with the backend each bucket runs."""
    from vitune.runtime.selector import SHIPPED_DIR, clear_cache

    clear_cache()
    assert (SHIPPED_DIR / "h100.yaml").exists()
    assert main(["show", "--gpu", "h100", "--preset", "qwen2.5-vl"]) == 0
    out = capsys.readouterr().out
    assert "exact GPU" in out and "h100.yaml" in out and "backend" in out
    assert "triton" in out  # the window bucket runs vitune's kernel


def test_show_rejects_unknown_gpu_key(capsys):
    with pytest.raises(SystemExit) as info:
        main(["show", "--gpu", "h1000"])
    assert info.value.code == 2 and "unknown GPU key 'h1000'" in capsys.readouterr().err


def test_runtime_path_imports_no_optuna_or_matplotlib():
    code = (
        "import os, sys; os.environ['TRITON_INTERPRET'] = '1'\n"
        "import torch, vitune\n"
        "q = torch.randn(24, 1, 32)\n"
        "vitune.vision_attention(q, q, q, torch.tensor([0, 10, 24], dtype=torch.int32))\n"
        "heavy = [m for m in ('optuna', 'matplotlib', 'rich') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert "HEAVY []" in out.stdout, out.stderr


def python_prints(*args: str) -> str:
    """What a fresh Python process prints for these arguments (its stderr on failure)."""
    run = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120)
    return run.stdout.strip() or run.stderr[-2000:]


def test_cli_commands_other_than_tune_need_no_optuna():
    """`vitune bench`, `show` and `validate` run where Optuna is not installed."""
    assert python_prints("-c", "import sys\n"
                               "from vitune.cli import build_parser\n"
                               "build_parser().parse_args(['validate', 'x.yaml'])\n"
                               "print('OPTUNA', 'optuna' in sys.modules)") == "OPTUNA False"


def test_the_cli_starts_without_torch_and_the_package_loads_its_api_on_use():
    """`vitune tune` starts its workers' fork server before it imports torch itself: the
    CLI module and the worker machinery import no torch; the public names still load."""
    import subprocess
    import sys

    code = ("import sys, vitune, vitune.cli, vitune.tuner.isolation\n"
            "print('torch' in sys.modules)\n"
            "from vitune import KernelConfig, vision_attention\n"
            "print('torch' in sys.modules, KernelConfig.__name__, vision_attention.__name__)\n"
            "try:\n    vitune.no_such_name\nexcept AttributeError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.splitlines() == [
        "False", "True KernelConfig vision_attention",
        "module 'vitune' has no attribute 'no_such_name'"]


def test_only_a_gpu_tune_starts_the_fork_server_first():
    from vitune.cli import _tunes_a_gpu

    assert _tunes_a_gpu(["tune", "--gpu", "h100"]) and _tunes_a_gpu(["-v", "tune"])
    assert not any(_tunes_a_gpu(argv) for argv in (["tune", "--interpret"], ["tune", "-h"],
                                                   ["bench", "--preset", "lengths"], []))


def test_help_and_version_import_no_torch_and_the_preset_names_match():
    from vitune import __version__, cli
    from vitune.bench.presets import TUNE_PRESETS
    from vitune.bench.workloads import PRESETS

    assert set(cli.BENCH_PRESET_NAMES) == set(PRESETS)
    assert set(cli.TUNE_PRESET_NAMES) == set(TUNE_PRESETS)
    assert python_prints("-c", "import sys, contextlib, io, vitune.cli as c\n"
                               "with contextlib.suppress(SystemExit), "
                               "contextlib.redirect_stdout(io.StringIO()):\n"
                               "    c.main(['--help'])\n"
                               "print('torch' in sys.modules)") == "False"
    assert python_prints("-m", "vitune.cli", "--version") == f"vitune {__version__}"


@pytest.mark.parametrize("argv,message", [
    (["plot", "--results", "no/such/file.jsonl"], "no/such/file.jsonl: cannot read"),
    (["plot", "--storage", "sqlite:////no/such/studies.db"], "no such SQLite file"),
    (["plot", "--results", "{bad}"], "line 2 is not a JSON object"),
    (["plot", "--configs", "{bad_yaml_dir}"], "schema_version"),
    (["bench", "--backends", "nosuch"], "unknown backend(s) ['nosuch']"),
])
def test_input_mistakes_are_one_sentence_and_status_2(argv, message, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"status": "n/a"}\nnot json\n')
    (tmp_path / "cfg").mkdir()
    for key in ("h100", "h200"):
        (tmp_path / "cfg" / f"{key}.yaml").write_text("schema_version: 7\n")
    argv = [a.format(bad=bad, bad_yaml_dir=tmp_path / "cfg") for a in argv]
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and message in err and "Traceback" not in err
    assert err.count("\n") == 1


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without a GPU")
def test_bench_without_a_gpu_says_what_runs_on_a_cpu(capsys):
    with pytest.raises(SystemExit) as info:
        main(["bench"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "vitune tune --interpret" in err
