"""configs YAML: validation names the file and entry; writes are atomic merges."""

import copy

import pytest
import yaml

from vitune.runtime.schema import (
    ConfigFileError,
    load_config_file,
    merge_buckets,
    write_config_file,
)

RUN = {"kernel_hash": "a1f31d591b9e", "triton": "3.6.0", "torch": "2.11.0+cu130",
       "cuda": "13.0", "device_name": "NVIDIA H100 80GB HBM3", "capability": "9.0",
       "date": "2026-11-27"}
BUCKET = {"head_dim": 80, "dtype": "bfloat16", "regime": "window", "seqlen": 64,
          "backend": "triton",
          "config": {"block_m": 64, "block_n": 32, "num_warps": 2, "num_stages": 2,
                     "head_split": True, "heads_fastest": True},
          "tflops": 45.5, "peers": {"varlen_attn": 41.1}, "trials": {"total": 40},
          "provenance": RUN}
DOC = {"schema_version": 2, "gpu": "h100", "interpreter": False,
       "provenance": {"device_name": "NVIDIA H100 80GB HBM3", "capability": "9.0"},
       "buckets": [BUCKET]}


def write_raw(tmp_path, doc, name="h100.yaml"):
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return path


def with_change(path_in_doc, value):
    doc = copy.deepcopy(DOC)
    target = doc
    for key in path_in_doc[:-1]:
        target = target[key]
    target[path_in_doc[-1]] = value
    return doc


def test_valid_file_round_trips(tmp_path):
    path = tmp_path / "h100.yaml"
    write_config_file(path, DOC)
    assert load_config_file(path) == DOC


@pytest.mark.parametrize(
    ("change", "message"),
    [((["buckets", 0, "config", "block_m"], 4096), r"buckets\[0\]\.config\.block_m: 4096"),
     ((["buckets", 0, "config", "num_warps"], 3), r"buckets\[0\]\.config\.num_warps: 3"),
     ((["buckets", 0, "config", "head_split"], "yes"), r"config\.head_split: 'yes'"),
     ((["buckets", 0, "head_dim"], 81), r"buckets\[0\]\.head_dim: 81"),
     ((["buckets", 0, "dtype"], "int8"), r"buckets\[0\]\.dtype"),
     ((["buckets", 0, "seqlen"], -5), r"buckets\[0\]\.seqlen"),
     ((["buckets", 0, "tflops"], float("nan")), r"buckets\[0\]\.tflops"),
     ((["buckets", 0, "surprise"], 1), r"buckets\[0\]: unknown keys \['surprise'\]"),
     ((["buckets", 0, "backend_with_out"], "cudnn"), r"buckets\[0\]\.backend_with_out"),
     ((["buckets", 0, "peers_with_out"], {"sdpa-cudnn": -1}),
      r"buckets\[0\]\.peers_with_out"),
     ((["schema_version"], 99), r"schema_version: expected one of \[1, 2\], got 99"),
     ((["schema_version"], "2"), r"schema_version: expected one of \[1, 2\], got '2'"),
     ((["provenance", "triton"], "3.6.0"), r"provenance: unknown keys \['triton'\]"),
     ((["buckets", 0, "provenance", "kernel"], "x"),
      r"buckets\[0\]\.provenance: unknown keys \['kernel'\]"),
     ((["buckets", 0, "provenance", "triton"], [3, 6]),
      r"buckets\[0\]\.provenance\.triton: \[3, 6\] is not a version"),
     ((["buckets", 0, "provenance"], "today"), r"buckets\[0\]\.provenance: expected a mapping"),
     ((["buckets", 0, "date"], "2026-11-27"), r"buckets\[0\]: unknown keys \['date'\]"),
     ((["gpu"], ""), "gpu: expected"),
     ((["buckets"], "all"), "buckets: expected a list")],
)
def test_out_of_schema_values_are_rejected_naming_file_and_entry(tmp_path, change, message):
    path = write_raw(tmp_path, with_change(*change))
    with pytest.raises(ConfigFileError, match=message) as info:
        load_config_file(path)
    assert str(path) in str(info.value)


def test_hostile_and_broken_files(tmp_path):
    hostile = write_raw(tmp_path, "!!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigFileError, match="not valid YAML"):
        load_config_file(hostile)
    with pytest.raises(ConfigFileError, match="not valid YAML"):
        load_config_file(write_raw(tmp_path, "buckets: [\n", "broken.yaml"))
    with pytest.raises(ConfigFileError, match="top level: expected a mapping"):
        load_config_file(write_raw(tmp_path, "- 1\n", "list.yaml"))
    with pytest.raises(ConfigFileError, match="cannot read"):
        load_config_file(tmp_path / "missing.yaml")
    dup = copy.deepcopy(DOC)
    dup["buckets"].append(copy.deepcopy(BUCKET))
    with pytest.raises(ConfigFileError, match=r"buckets\[1\]: duplicate bucket"):
        load_config_file(write_raw(tmp_path, dup, "dup.yaml"))


def test_invalid_write_leaves_the_old_file_untouched(tmp_path):
    path = tmp_path / "h100.yaml"
    write_config_file(path, DOC)
    before = path.read_text()
    with pytest.raises(ConfigFileError):
        write_config_file(path, with_change(["buckets", 0, "config", "block_m"], 3))
    assert path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h100.yaml"]  # no temp files left


def test_merge_replaces_same_bucket_and_keeps_others():
    other = {**BUCKET, "regime": "full", "seqlen": 5476}
    newer = {**BUCKET, "tflops": 50.0}
    merged = merge_buckets([BUCKET, other], [newer])
    assert len(merged) == 2
    assert {b["regime"]: b["tflops"] for b in merged} == {"window": 50.0, "full": 45.5}


def test_written_file_is_readable_by_others(tmp_path):
    """Atomic writes go through mkstemp (mode 0600); the result must not stay private."""
    import os

    from vitune.runtime.atomic import write_atomic

    old = os.umask(0o022)
    try:
        write_atomic(tmp_path / "h100.yaml", "schema_version: 1\n")
    finally:
        os.umask(old)
    assert (tmp_path / "h100.yaml").stat().st_mode & 0o777 == 0o644
    assert not list(tmp_path.glob(".*.tmp"))


def test_file_from_before_a_later_choice_still_loads(tmp_path):
    """A file written before `tma` existed (BUCKET has no tma key) loads with the choice
    off; a bad value for it is still refused."""
    from vitune.runtime.schema import bucket_config

    doc = load_config_file(write_raw(tmp_path, DOC))
    assert bucket_config(doc["buckets"][0]).tma is False
    bad = with_change(["buckets", 0, "config"], {**BUCKET["config"], "tma": "yes"})
    with pytest.raises(ConfigFileError, match="tma"):
        load_config_file(write_raw(tmp_path, bad))


def test_rotary_buckets_validate_and_merge_beside_plain_ones():
    from vitune.runtime.schema import validate_document

    plain = {"head_dim": 80, "dtype": "bfloat16", "regime": "full", "seqlen": 5476,
             "backend": "sdpa_cudnn"}
    rotary = {**plain, "rotary": True, "backend": "triton", "config": BUCKET["config"]}
    merged = merge_buckets([plain], [rotary])
    assert merged == [plain, rotary]  # two buckets: the key tells them apart
    assert merge_buckets(merged, [{**rotary, "seqlen": 5476, "tflops": 1.0}])[1]["tflops"] == 1
    doc = {"schema_version": 1, "gpu": "h100", "buckets": merged}
    validate_document(doc, "h100.yaml")
    with pytest.raises(ConfigFileError, match=r"buckets\[0\].rotary: 'yes' is not true or false"):
        validate_document({**doc, "buckets": [{**plain, "rotary": "yes"}]}, "h100.yaml")


def version_1(doc: dict) -> dict:
    """`doc` as the tuner wrote it before version 2: one provenance for the whole file
    (the latest run's), a date per bucket."""
    old = copy.deepcopy(doc)
    old["schema_version"] = 1
    old["provenance"] = {**RUN, "date": "2026-12-01"}
    for bucket in old["buckets"]:
        bucket.pop("provenance")
        bucket["date"] = "2026-11-27"
    return old


def test_a_version_1_file_loads_with_its_provenance_given_to_each_bucket(tmp_path):
    """Each bucket takes the file's provenance, dated with its own date; the file keeps the
    card. Rewriting it writes version 2 with the same numbers."""
    other = {**BUCKET, "regime": "full", "seqlen": 4096}
    old = version_1({**DOC, "buckets": [BUCKET, other]})
    doc = load_config_file(write_raw(tmp_path, old))
    assert doc["schema_version"] == 2
    assert doc["provenance"] == {"device_name": RUN["device_name"], "capability": "9.0"}
    assert [b["provenance"] for b in doc["buckets"]] == [RUN, RUN]  # (the bucket's date)
    assert [{k: v for k, v in b.items() if k != "provenance"} for b in doc["buckets"]] == [
        {k: v for k, v in b.items() if k != "date"} for b in old["buckets"]]
    write_config_file(tmp_path / "h100.yaml", old)
    assert yaml.safe_load((tmp_path / "h100.yaml").read_text()) == doc
    with pytest.raises(ConfigFileError, match=r"buckets\[0\]: a bucket's own provenance "
                                              "needs schema_version 2"):
        load_config_file(write_raw(tmp_path, {**old, "buckets": [BUCKET]}))


def test_a_version_1_file_without_provenance_loads_without_any(tmp_path):
    old = {"schema_version": 1, "gpu": "h100", "buckets": [
        {k: v for k, v in BUCKET.items() if k != "provenance"}]}
    doc = load_config_file(write_raw(tmp_path, old))
    assert "provenance" not in doc and "provenance" not in doc["buckets"][0]


def test_the_shipped_files_are_version_2_with_each_buckets_provenance():
    from vitune.runtime.selector import SHIPPED_DIR

    for path in sorted(SHIPPED_DIR.glob("*.yaml")):
        assert yaml.safe_load(path.read_text())["schema_version"] == 2
        for bucket in load_config_file(path)["buckets"]:
            assert {"kernel_hash", "triton", "torch", "date", "device_name"} <= set(
                bucket["provenance"]), path
