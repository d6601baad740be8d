"""Config files never fail a call: hostile or broken files in VITUNE_CONFIG_DIR are skipped
with one warning naming the file and the fault, read within bounds (no hang, no unbounded
memory or time), and `vitune validate` says the same in one line per fault, status 1."""

import logging
import os
import time

import pytest
import torch
import yaml
from conftest import make_packed

from vitune import vision_attention
from vitune.cli import main
from vitune.kernels.vision_attn.launch import kernel_is_interpreted
from vitune.runtime import selector
from vitune.runtime.gpu import interpreter_identity
from vitune.runtime.schema import MAX_CONFIG_BYTES, ConfigFileError, load_config_file

GOOD_BUCKET = {"head_dim": 32, "dtype": "float32", "regime": "full", "seqlen": 12,
               "backend": "triton",
               "config": {"block_m": 32, "block_n": 32, "num_warps": 2, "num_stages": 1,
                          "head_split": True, "heads_fastest": False, "tma": False,
                          "windows": False}}


def document(buckets=(GOOD_BUCKET,), **top):
    return {"schema_version": 1, "gpu": "interpreter", "interpreter": True,
            "buckets": list(buckets), **top}


def alias_bomb() -> str:
    """schema_version: nine levels of lists of nine aliases of the level below (9^9 leaves
    once expanded, a few hundred bytes as written)."""
    levels = ['&a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for i in range(1, 9):
        levels.append(f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "schema_version: [" + ", ".join(levels) + "]\n"


HOSTILE = {
    "latin-1": lambda p: p.write_bytes("gpu: caf\xe9\n".encode("latin-1")),
    "utf-16": lambda p: p.write_text(yaml.safe_dump(document()), encoding="utf-16"),
    "nested 2000 deep": lambda p: p.write_text("[" * 2000 + "]" * 2000),
    "alias bomb": lambda p: p.write_text(alias_bomb()),
    "fifo": lambda p: os.mkfifo(p),
    "link to /dev/zero": lambda p: p.symlink_to("/dev/zero"),
    "over the size cap": lambda p: p.write_text("# pad\n" * (MAX_CONFIG_BYTES // 6 + 1)),
    "a folder": lambda p: p.mkdir(),
}
MESSAGES = {"latin-1": "not UTF-8 text", "utf-16": "not UTF-8 text",
            "nested 2000 deep": "nested too deeply", "alias bomb": "schema_version",
            "fifo": "not a regular file", "link to /dev/zero": "not a regular file",
            "over the size cap": "limit of a configs file", "a folder": "not a regular file"}


@pytest.fixture
def config_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(selector, "_user_paths", [])
    monkeypatch.setattr(selector, "_warned", set())
    monkeypatch.setattr(selector, "SHIPPED_DIR", tmp_path / "none")
    monkeypatch.setenv(selector.CONFIG_DIR_ENV, str(tmp_path))
    selector.clear_cache()
    yield tmp_path
    selector.clear_cache()


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_a_hostile_file_is_refused_quickly_with_one_line(kind, tmp_path, capsys):
    path = tmp_path / "interpreter.yaml"
    HOSTILE[kind](path)
    start = time.monotonic()
    with pytest.raises(ConfigFileError, match=MESSAGES[kind]) as info:
        load_config_file(path)
    assert str(path) in str(info.value) and len(str(info.value)) < len(str(path)) + 300
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert MESSAGES[kind] in err and "Traceback" not in err and err.count("\n") == 1
    assert time.monotonic() - start < 5


@pytest.mark.skipif(torch.cuda.is_available() or not kernel_is_interpreted(), reason="CPU lane")
@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_a_call_with_a_hostile_file_at_hand_runs_and_warns_once(kind, config_dir, caplog):
    HOSTILE[kind](config_dir / "interpreter.yaml")
    q, k, v, cu = make_packed([5, 7], heads=1, head_dim=32, dtype=torch.float32)
    with caplog.at_level(logging.WARNING, logger="vitune.runtime.selector"):
        for _ in range(2):
            selector.clear_cache()
            vision_attention(q, k, v, cu)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and MESSAGES[kind] in warnings[0].getMessage()


def test_a_folder_that_cannot_be_listed_is_skipped_with_one_warning(config_dir, monkeypatch,
                                                                    caplog):
    """(As root every folder can be listed: the listing's PermissionError is made here.)"""
    real_glob = type(config_dir).glob

    def glob(self, pattern):
        if self == config_dir:
            raise PermissionError(13, "Permission denied")
        return real_glob(self, pattern)

    monkeypatch.setattr(type(config_dir), "glob", glob)
    with caplog.at_level(logging.WARNING, logger="vitune.runtime.selector"):
        for _ in range(2):
            selector.clear_cache()
            choice = selector.choose(interpreter_identity(), 32, torch.float32, 12)
    assert choice.level == "built-in heuristic"
    assert [r.getMessage() for r in caplog.records] == [
        f"vitune: ignoring a configs folder: {config_dir}: cannot list it: Permission denied"]


def test_a_config_that_breaks_the_kernel_rules_fails_validate_and_warns(config_dir, caplog,
                                                                        capsys):
    huge = {**GOOD_BUCKET, "config": {**GOOD_BUCKET["config"], "block_m": 256,
                                      "block_n": 128, "num_stages": 4, "head_split": False}}
    huge["head_dim"] = 256
    path = config_dir / "interpreter.yaml"
    path.write_text(yaml.safe_dump(document([GOOD_BUCKET, huge])))
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert "buckets[1].config: m256n128w2s4-pad-tiles breaks the kernel rules" in err
    assert err.count("\n") == 1
    with caplog.at_level(logging.WARNING, logger="vitune.runtime.selector"):
        choice = selector.choose(interpreter_identity(), 256, torch.float32, 512)
    assert choice.level == "built-in heuristic"
    assert any("breaks the kernel rules" in r.getMessage() for r in caplog.records)
