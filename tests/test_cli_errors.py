"""The command line's contract: help text and a shown default on every option, status 2 and
one line (no traceback) for every usage or environment mistake, status 1 for failed work,
and what `vitune tune` and `vitune show` do on a machine without a GPU."""

import argparse
import subprocess
import sys

import pytest
import torch
import yaml

from vitune.cli import build_parser, main

NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {"(top)": parser, **action.choices}


@pytest.mark.parametrize("name", sorted(subcommands()))
def test_every_option_has_help_and_shows_its_default(name):
    parser = subcommands()[name]
    formatter = parser._get_formatter()
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        text = formatter._get_help_string(action)
        assert action.help, f"{name} {action.dest}: no help"
        if action.option_strings and not isinstance(action, argparse._VersionAction):
            assert "default" in text, f"{name} {'/'.join(action.option_strings)}: no default"
    parser.format_help()  # (every help string formats)


def test_every_help_page_imports_no_torch():
    code = ("import sys, contextlib, io, vitune.cli as c\n"
            "for argv in (['--help'], ['tune', '--help'], ['show', '-h'], ['bench', '-h'],\n"
            "             ['plot', '-h'], ['validate', '-h'], ['sweep', '-h'],\n"
            "             ['compile-check', '-h']):\n"
            "    with contextlib.suppress(SystemExit), "
            "contextlib.redirect_stdout(io.StringIO()):\n"
            "        c.main(argv)\n"
            "print('torch' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert run.stdout.strip() == "False", run.stderr[-2000:]


def one_line_status_2(argv, capsys) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    assert "Traceback" not in err and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("argv,message", [
    ([], "the following arguments are required: COMMAND"),
    (["nosuch"], "invalid choice: 'nosuch'"),
    (["tune", "--trials", "0"], "--trials: expected a whole number >= 1, got '0'"),
    (["tune", "--trials", "many"], "--trials: expected a whole number >= 1, got 'many'"),
    (["tune", "--timeout", "-1"], "--timeout: expected a number of seconds > 0"),
    (["tune", "--trial-timeout", "nan"], "--trial-timeout: expected a number of seconds"),
    (["tune", "--compile-jobs", "-1"], "--compile-jobs: expected a whole number >= 0"),
    (["tune", "--seqlens", "0"], "--seqlens: expected a whole number >= 1"),
    (["tune", "--sampler", "best"], "--sampler: invalid choice: 'best'"),
    (["tune", "--dtype", "int8"], "--dtype: invalid choice: 'int8'"),
    (["show", "--preset", "nosuch"], "--preset: invalid choice: 'nosuch'"),
    (["bench", "--reps", "0"], "--reps: expected a whole number >= 1"),
    (["bench", "--rotary", "yes"], "--rotary: invalid choice: 'yes'"),
    (["sweep", "--rep-ms", "0"], "--rep-ms: expected a number of seconds > 0"),
    (["validate"], "the following arguments are required: FILE"),
    (["compile-check", "--jobs", "0"], "--jobs: expected a whole number >= 1"),
])
def test_usage_mistakes_are_one_line_naming_the_help(argv, message, capsys):
    err = one_line_status_2(argv, capsys)
    command = " ".join(["vitune", *argv[:1]]) if argv and argv[0] != "nosuch" else "vitune"
    assert message in err and f"(see `{command} --help`)" in err


@pytest.mark.parametrize("command,preset,takers", [
    ("tune", "context", "`vitune bench` and `vitune sweep`"),
    ("show", "lengths", "`vitune bench` and `vitune sweep`"),
    ("bench", "qwen2.5-vl", "`vitune tune` and `vitune show`"),
    ("sweep", "tiny", "`vitune tune` and `vitune show`"),
])
def test_a_preset_of_the_other_set_names_the_commands_that_take_it(command, preset, takers,
                                                                  capsys):
    from vitune.cli import BENCH_PRESET_NAMES, TUNE_PRESET_NAMES

    assert not set(BENCH_PRESET_NAMES) & set(TUNE_PRESET_NAMES)
    err = one_line_status_2([command, "--preset", preset], capsys)
    assert f"'{preset}' is a preset of {takers}" in err


@pytest.fixture
def files(tmp_path):
    (tmp_path / "a-file").write_text("x\n")
    (tmp_path / "not-a-row.jsonl").write_text('{"status": "ok", "workload": "w"}\n')
    (tmp_path / "encoder.jsonl").write_text(
        '{"status": "ok", "path": "vitune", "tokens_per_s": 1.0}\n')
    (tmp_path / "text-rate.jsonl").write_text(
        '{"status": "ok", "workload": "w", "backend": "b", "tflops": "fast"}\n')
    (tmp_path / "rows.jsonl").write_text(
        '{"status": "ok", "workload": "w", "backend": "b", "tflops": 1.0, "regime": "full",'
        ' "head_dim": 80, "max_seqlen": 64}\n')
    (tmp_path / "empty.jsonl").write_text("")
    return tmp_path


# Each: argv (with {d} the fixture's folder) and what the one line says.
INPUT_MISTAKES = [
    # plot
    (["plot"], "nothing to plot"),
    (["plot", "--results"], "nothing to plot"),
    (["plot", "--results", "{d}/missing.jsonl"], "missing.jsonl: cannot read"),
    (["plot", "--results", "{d}"], "cannot read: Is a directory"),
    (["plot", "--results", "{d}/empty.jsonl"], "no measured rows"),
    (["plot", "--results", "{d}/not-a-row.jsonl"], "line 1 has no backend, tflops"),
    (["plot", "--results", "{d}/encoder.jsonl"], "not a row of `vitune bench`"),
    (["plot", "--results", "{d}/text-rate.jsonl"], "tflops 'fast' is not a number"),
    (["plot", "--results", "{d}/rows.jsonl", "--cross-gpu", "nosuch"],
     "--cross-gpu nosuch: not measured in --results (there: b)"),
    (["plot", "--results", "{d}/rows.jsonl", "--out", "{d}/a-file"], "is a file, not a folder"),
    (["plot", "--storage", "not-a-url"], "--storage not-a-url cannot be read"),
    (["plot", "--storage", "sqlite:///{d}/missing.db"], "no such SQLite file"),
    (["plot", "--storage", "journal:{d}/missing.log"], "no such journal file"),
    (["plot", "--configs", "{d}/missing"], "--configs {d}/missing: no such folder"),
    (["plot", "--configs", "{d}/a-file"], "--configs {d}/a-file: not a folder"),
    # validate
    (["validate", "{d}/missing.yaml"], "{d}/missing.yaml: no such file"),
    # show
    (["show", "--gpu", "h1000"], "unknown GPU key 'h1000'"),
    (["show", "--gpu", ""], "unknown GPU key ''"),
    # bench and sweep: mistakes are found before the GPU is looked for
    (["bench", "--backends", ""], "--backends names nothing"),
    (["bench", "--backends", "nosuch"], "unknown backend(s) ['nosuch']"),
    (["bench", "--workloads", " , "], "--workloads names nothing"),
    (["bench", "--workloads", "nosuch"], "unknown workload(s) ['nosuch']"),
    (["bench", "--out", "{d}"], "--out {d} is a folder"),
    (["bench", "--out", "{d}/a-file/rows.jsonl"], "cannot be written"),
    (["bench", "--encoder", "qwen2.5-vl", "--images", "1080by1920"], "--images takes"),
    (["bench", "--encoder", "qwen2.5-vl", "--images", "0x10"], "--images takes"),
    (["bench", "--encoder", "qwen2.5-vl", "--backends", "sdpa-cudnn"], "unknown: ['sdpa-cudnn']"),
    (["sweep", "--workloads", "nosuch"], "unknown workload(s) ['nosuch']"),
    # tune (the interpreter: no GPU needed; every mistake is found before any search)
    (["tune", "--interpret", "--buckets", ","], "--buckets names nothing"),
    (["tune", "--interpret", "--buckets", "d80-bfloat16-full-L4096"],
     "d80-bfloat16-full-L4096 not among this run's buckets"),
    (["tune", "--interpret", "--head-dim", "81", "--seqlens", "64"],
     "--head-dim 81 is not a multiple of 8"),
    (["tune", "--interpret", "--head-dim", "32"], "--head-dim and --seqlens go together"),
    (["tune", "--interpret", "--dtype", "bfloat16"], "computes bf16 matrix products wrongly"),
    (["tune", "--interpret", "--gpu", "h100"], "not h100; drop --gpu or --interpret"),
    (["tune", "--interpret", "--workers", "none"], "--workers takes a positive number"),
    (["tune", "--interpret", "--out", "{d}/a-file"], "is not a folder"),
    (["tune", "--interpret", "--storage", "not-a-url"], "--storage not-a-url cannot be opened"),
    (["tune", "--interpret", "--storage", "sqlite:///{d}/missing/studies.db"],
     "cannot be opened: {d}/missing: No such file or directory (the SQLite file's folder)"),
]


@pytest.mark.parametrize("argv,message", INPUT_MISTAKES,
                         ids=[" ".join(a) for a, _ in INPUT_MISTAKES])
def test_input_mistakes_are_one_sentence_and_status_2(argv, message, files, capsys,
                                                      monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(files / "config"))  # (tune's default --out)
    argv = [a.replace("{d}", str(files)) for a in argv]
    if argv[0] == "tune" and "--out" not in argv:
        argv += ["--out", str(files / "out")]
    err = one_line_status_2(argv, capsys)
    assert message.replace("{d}", str(files)) in err


@NO_GPU
@pytest.mark.parametrize("argv,message", [
    (["tune", "--gpu", "h100"], "asked to tune for h100 but this machine has no CUDA GPU"),
    (["bench"], "benchmarks need a CUDA GPU"),
    (["sweep"], "benchmarks need a CUDA GPU"),
])
def test_environment_mistakes_are_status_2(argv, message, capsys):
    assert message in one_line_status_2(argv, capsys)


def test_failed_work_is_status_1(tmp_path, capsys):
    """A file that does not validate (the check's own finding, not a usage mistake), and a
    benchmark where nothing was measured."""
    from vitune.cli import _measured_any

    bad = tmp_path / "h100.yaml"
    bad.write_text("schema_version: 2\ngpu: h100\nbuckets: 7\n")
    assert main(["validate", str(bad)]) == 1
    assert capsys.readouterr().err.strip() == f"vitune: {bad}: buckets: expected a list"
    assert _measured_any([{"status": "wrong"}, {"status": "n/a"}]) == 1
    assert "nothing was measured" in capsys.readouterr().err
    assert _measured_any([{"status": "ok"}]) == 0


def test_validate_accepts_both_schema_versions(tmp_path, capsys):
    v1 = tmp_path / "h100.yaml"
    v1.write_text("schema_version: 1\ngpu: h100\nprovenance: {triton: 3.6.0}\nbuckets: []\n")
    v2 = tmp_path / "h200.yaml"
    v2.write_text("schema_version: 2\ngpu: h200\nprovenance: {device_name: NVIDIA H200}\n"
                  "buckets: []\n")
    assert main(["validate", str(v1), str(v2)]) == 0
    out = capsys.readouterr().out
    assert "schema version 1" in out and "schema version 2" in out


def interpreter_file(folder, kernel: str, triton_version: str):
    from vitune.kernels.vision_attn.space import KernelConfig

    folder.mkdir(parents=True, exist_ok=True)
    provenance = {"kernel_hash": kernel, "triton": triton_version, "date": "2026-11-27"}
    bucket = {"head_dim": 32, "dtype": "float16", "regime": "full", "seqlen": 150,
              "backend": "triton", "config": KernelConfig(32, 32, 2, 1).to_dict(),
              "tflops": 0.01, "provenance": provenance}
    path = folder / "interpreter.yaml"
    path.write_text(yaml.safe_dump({"schema_version": 2, "gpu": "interpreter",
                                    "interpreter": True, "buckets": [bucket]}))
    return path


@pytest.fixture
def fresh_selector(monkeypatch, tmp_path):
    from vitune.runtime import selector

    monkeypatch.setattr(selector, "_user_paths", [])
    monkeypatch.setattr(selector, "_warned", set())
    monkeypatch.delenv(selector.CONFIG_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    selector.clear_cache()
    yield tmp_path / "vitune"
    selector.clear_cache()


@NO_GPU
def test_show_without_a_gpu_shows_the_interpreters_picks_and_marks_stale_ones(
        fresh_selector, capsys, caplog):
    import triton

    from vitune.kernels.vision_attn.identity import kernel_hash

    assert main(["show"]) == 0
    captured = capsys.readouterr()
    assert "no CUDA GPU here" in captured.err and captured.err.count("\n") == 1
    assert "selector on interpreter" in captured.out and "preset tiny" in captured.out
    assert "built-in heuristic" in captured.out and "stale:" not in captured.out

    path = interpreter_file(fresh_selector, kernel_hash(), triton.__version__)
    from vitune.runtime import selector

    selector.clear_cache()
    assert main(["show"]) == 0
    out = capsys.readouterr().out
    assert path.name in out and "exact GPU" in out and "stale:" not in out

    interpreter_file(fresh_selector, "0123456789ab", triton.__version__)
    selector.clear_cache()
    assert main(["show"]) == 0
    captured = capsys.readouterr()
    assert (f"stale: d32-float16-full-L150: tuned for kernel 0123456789ab (installed "
            f"{kernel_hash()}), in {path}") in captured.out
    assert "`vitune tune`" in captured.out
    warned = [r for r in caplog.records if "was tuned for kernel 0123456789ab" in r.message]
    assert len(warned) == 1 and "interpreter.yaml" in warned[0].message


@NO_GPU
def test_tune_auto_without_a_gpu_tunes_the_interpreter_saying_so(fresh_selector, capsys):
    from vitune.runtime.schema import load_config_file

    assert main(["tune", "--gpu", "auto", "--trials", "1", "--buckets",
                 "d32-float16-window-L16"]) == 0
    err = capsys.readouterr().err
    assert err.count("no CUDA GPU here: tuning the Triton interpreter") == 1
    doc = load_config_file(fresh_selector / "interpreter.yaml")
    assert [b["seqlen"] for b in doc["buckets"]] == [16] and doc["interpreter"]


def test_show_gives_the_backend_for_calls_with_out_and_with_rotary(fresh_selector, capsys):
    """`vitune show` names what `auto` runs per bucket for a call without out=, with out=
    (the crown's `backend_with_out`), and with --rotary the rotary calls' picks."""
    from vitune.kernels.vision_attn.space import KernelConfig
    from vitune.runtime import selector

    fresh_selector.mkdir(parents=True)
    plain = {"head_dim": 80, "dtype": "bfloat16", "regime": "full", "seqlen": 5476,
             "backend": "sdpa_cudnn", "backend_with_out": "triton",
             "config": KernelConfig(64, 64, 4, 2).to_dict(), "tflops": 360.0}
    rotary = {**plain, "backend": "triton", "backend_with_out": "triton", "rotary": True,
              "config": KernelConfig(128, 64, 8, 2).to_dict()}
    (fresh_selector / "h100.yaml").write_text(yaml.safe_dump(
        {"schema_version": 2, "gpu": "h100", "buckets": [plain, rotary]}))
    selector.clear_cache()

    def row(out: str, key: str) -> list[str]:
        line = next(x for x in out.splitlines() if f" {key} " in x)
        return [cell.strip() for cell in line.split("│")[1:5]]

    assert main(["show", "--gpu", "h100"]) == 0
    out = capsys.readouterr().out
    assert row(out, "d80-bfloat16-full-L5476") == ["d80-bfloat16-full-L5476", "sdpa_cudnn",
                                                   "triton", "m64n64w4s2-split-tiles"]
    # Two files of one name (this user's and the shipped one) are told apart by folder.
    assert "vitune/h100.yaml [full L5476]" in out and "configs/h100.yaml [window L64]" in out
    assert f"vitune/h100.yaml: {fresh_selector / 'h100.yaml'}" in out
    assert main(["show", "--gpu", "h100", "--rotary"]) == 0
    out = capsys.readouterr().out
    assert "calls with rotary" in out and "[full L5476 rotary]" in out
    assert row(out, "d80-bfloat16-full-L5476-rotary") == [
        "d80-bfloat16-full-L5476-rotary", "triton", "triton", "m128n64w8s2-split-tiles"]
