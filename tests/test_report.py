"""`vitune report`: docs/benchmarks.md is generated from the rows in data/bench/ and kept up
to date; the tables it builds from bench rows, and one clear line for every input mistake."""

import json
from pathlib import Path

import pytest

from vitune.bench.report import render
from vitune.cli import main

ROOT = Path(__file__).resolve().parents[1]
RUN = {"device_name": "NVIDIA H100 80GB HBM3", "torch": "2.11.0", "triton": "3.6.0",
       "date": "2026-12-06"}
REGENERATE = "vitune report --out docs/benchmarks.md data/bench/*/*.jsonl"


def bench_files() -> list[Path]:
    return sorted((ROOT / "data" / "bench").glob("*/*.jsonl"))


def test_benchmarks_page_is_up_to_date():
    page = (ROOT / "docs" / "benchmarks.md").read_text()
    assert render(bench_files()) == page, f"docs/benchmarks.md is stale: run `{REGENERATE}`"
    assert REGENERATE in page


def test_every_kept_bench_file_is_on_the_page_with_its_card_and_date():
    page = render(list(reversed(bench_files())))  # (any order gives the same page)
    assert page == render(bench_files())
    for path in bench_files():
        if path.stem.endswith("-baseline"):
            continue
        first = json.loads(path.read_text().splitlines()[0])
        heading = f"{first['device_name']}, torch {first['torch']}, triton {first['triton']}"
        assert heading in page and first["date"] in page, path


def kernel_row(workload, backend, ms, rotary=False, status="ok", **extra):
    row = {"workload": workload, "backend": backend, "rotary": rotary, "status": status,
           "heads": 16, "dtype": "bfloat16", "segments": 2, "total_tokens": 2048, **RUN}
    if status == "ok":
        row |= {"median_ms": ms, "tflops": 10.0 / ms}
    return row | extra


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_kernel_table_bolds_the_fastest_and_compares_with_its_baseline(tmp_path):
    run = write(tmp_path / "context.jsonl", [
        kernel_row("2x1024 d80", "vitune-auto", 0.5), kernel_row("2x1024 d80", "sdpa", 0.4),
        kernel_row("windows d80", "vitune-auto", 0.2),
        kernel_row("windows d80", "sdpa", None, status="n/a"),
        kernel_row("windows d80", "flash_attn", None, status="n/a")])
    base = write(tmp_path / "context-baseline.jsonl", [
        kernel_row("2x1024 d80", "vitune-auto", 0.4), kernel_row("windows d80", "vitune-auto",
                                                                  0.25)])
    (tmp_path / "context.note.md").write_text("The baseline is the tree before X.\n")
    page = render([base, run])
    assert "| workload | vitune-auto | sdpa | vitune-auto: time / baseline's |" in page
    assert "| 2x1024 d80 | 20.0 | **25.0** | 1.250 |" in page
    assert "| windows d80 | **50.0** | n/a | 0.800 |" in page
    assert "Not available in this run: flash_attn." in page
    assert "time ratios 0.800-1.250" in page
    assert "The baseline is the tree before X." in page
    assert page.count("### ") == 1  # (the baseline has no table of its own)


def test_rotary_table_gives_each_backends_cost(tmp_path):
    rows = [kernel_row("full d80", b, ms, rotary=rot) for b, ms, rot in [
        ("vitune-auto", 2.0, False), ("vitune-auto", 2.5, True),
        ("varlen_attn", 0.1, False), ("varlen_attn", 0.4, True)]]
    page = render([write(tmp_path / "rotary.jsonl", rows)])
    assert "### Rotary fused into the kernel: NVIDIA H100 80GB HBM3, torch 2.11.0" in page
    assert "| full d80 | 2 / 2,048 | 2.000 ms | 2.500 ms | +25% | 100 us | 400 us | +300% |" \
        in page


def test_rotate_first_cost_is_against_autos_time_without_rotary(tmp_path):
    rows = [kernel_row("full d80", b, ms, rotary=rot, status=status) for b, ms, rot, status in [
        ("vitune-auto", 2.0, False, "ok"), ("vitune-auto", 2.5, True, "ok"),
        ("vitune-rotate-first", None, False, "n/a"), ("vitune-rotate-first", 2.2, True, "ok")]]
    page = render([write(tmp_path / "rotary.jsonl", rows)])
    assert "| full d80 | 2 / 2,048 | 2.000 ms | 2.500 ms | +25% | n/a | 2.200 ms | +10% |" \
        in page
    assert "its cost is against `vitune-auto`'s time without rotary" in page


def test_given_out_table_gives_autos_cost_against_the_fastest_for_each_call(tmp_path):
    rows = [kernel_row("8x1024 d80", b, ms, given_out=way) for b, ms, way in [
        ("vitune-auto", 0.100, False), ("vitune-tuned", 0.110, False),
        ("sdpa-cudnn", 0.100, False), ("vitune-auto", 0.111, True),
        ("vitune-tuned", 0.110, True), ("sdpa-cudnn", 0.112, True)]]
    page = render([write(tmp_path / "context-out.jsonl", rows)])
    assert "### `auto` with and without out=: NVIDIA H100 80GB HBM3" in page
    assert "| 8x1024 d80 | - | 100.0 | 90.9 | 100.0 | 1.000 (sdpa-cudnn) | +0.0 us |" in page
    assert "| 8x1024 d80 | out= | 90.1 | 90.9 | 89.3 | 1.009 (vitune-tuned) | +1.0 us |" in page


def test_given_out_table_says_when_its_times_are_medians_of_rounds(tmp_path):
    rows = [kernel_row("8x1024 d80", b, ms, given_out=True, rounds=3, round_medians_ms=r)
            for b, ms, r in [("vitune-auto", 0.100, [0.100, 0.104, 0.099]),
                             ("sdpa-cudnn", 0.101, [0.101, 0.101, 0.100])]]
    page = render([write(tmp_path / "context-out.jsonl", rows)])
    assert "the median of 3 rounds" in page and "differed by up to 5.1%" in page


def test_tower_table_compares_each_path_with_the_default_and_varlen(tmp_path):
    common = {"tower": "qwen2.5-vl", "tokens": 1024, "layers": 32, "dtype": "bfloat16",
              "images": [[448, 448], [448, 448]], "transformers": "5.17.0", **RUN}
    rows = [{**common, "path": "transformers-sdpa", "status": "ok", "median_ms": 300.0,
             "tokens_per_s": 3413.3, "attention_rotary_ms": 200.0},
            {**common, "path": "varlen+hf-rotary", "status": "ok", "median_ms": 150.0,
             "tokens_per_s": 6826.7, "attention_rotary_ms": 50.0, "rel_diff_vs_first": 0.02},
            {**common, "path": "vitune", "status": "ok", "median_ms": 120.0,
             "tokens_per_s": 8533.3, "attention_rotary_ms": 20.0, "rel_diff_vs_first": 0.021},
            {**common, "path": "skip-attention", "status": "bound", "median_ms": 100.0,
             "tokens_per_s": 10240.0}]
    page = render([write(tmp_path / "encoder-qwen2.5-vl.jsonl", rows)])
    assert "transformers 5.17.0, 2026-12-06" in page
    assert "2 images (448x448 x 2), 1,024 patches" in page
    assert "| **120.0** | **8,533** | **20.0 ms** | **2.50x** | **1.25x** | **0.021** |" in page
    assert "(the ceiling) | 100.0 | 10,240 | - | 3.00x | 1.50x | - |" in page


@pytest.mark.parametrize("files,message", [
    ({"a.jsonl": "not json\n"}, "a.jsonl: line 1 is not a bench row"),
    ({"a.jsonl": ""}, "a.jsonl: no bench rows"),
    ({"a.jsonl": [kernel_row("w", "b", 1.0), kernel_row("w", "c", 1.0, date="2026-12-07")]},
     "a.jsonl: rows of more than one run"),
    ({"a-baseline.jsonl": [kernel_row("w", "b", 1.0)]}, "a baseline needs a.jsonl"),
    ({"a.jsonl": [kernel_row("w", "b", 1.0), kernel_row("w", "b", 2.0)]},
     "two rows for 'w' on b"),
    ({"a.jsonl": [{k: v for k, v in kernel_row("w", "b", 1.0).items() if k != "tflops"}]},
     "a.jsonl: a row lacks a field"),
])
def test_input_mistakes_are_one_sentence_and_status_2(files, message, tmp_path, capsys):
    paths = []
    for name, content in files.items():
        path = tmp_path / name
        if isinstance(content, list):
            write(path, content)
        else:
            path.write_text(content)
        paths.append(str(path))
    with pytest.raises(SystemExit) as info:
        main(["report", *paths])
    err = capsys.readouterr().err
    assert info.value.code == 2 and message in err and "Traceback" not in err
    assert err.count("\n") == 1


def test_report_writes_the_page_where_asked(tmp_path, capsys):
    out = tmp_path / "benchmarks.md"
    run = write(tmp_path / "lengths.jsonl", [kernel_row("1x4096 d80", "vitune-auto", 0.2)])
    assert main(["report", "--out", str(out), str(run)]) == 0
    assert out.read_text() == render([run]) and f"wrote {out}" in capsys.readouterr().out
    assert main(["report", str(run)]) == 0
    assert capsys.readouterr().out == render([run])
