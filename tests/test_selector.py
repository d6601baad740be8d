"""The runtime selector on faked GPUs: lookup, nearest length, every fallback level,
broken and hostile files, user precedence, and its use by vision_attention."""

import logging

import pytest
import torch
import yaml
from conftest import make_packed

from vitune.kernels.vision_attn.space import KernelConfig, default_config
from vitune.runtime import selector
from vitune.runtime.gpu import identify, interpreter_identity

H100 = identify("NVIDIA H100 80GB HBM3", (9, 0))
H200 = identify("NVIDIA H200", (9, 0))
GB200 = identify("NVIDIA GB200", (10, 0))


def cfg(block_m, block_n=64, warps=4, stages=2):
    return KernelConfig(block_m=block_m, block_n=block_n, num_warps=warps, num_stages=stages)


def bucket(seqlen, config, regime="full", dtype="bfloat16", head_dim=80):
    return {"head_dim": head_dim, "dtype": dtype, "regime": regime, "seqlen": seqlen,
            "backend": "triton", "config": config.to_dict(), "tflops": 100.0 + seqlen / 1e3}


def write(directory, key, buckets, capability="9.0", interpreter=False):
    directory.mkdir(parents=True, exist_ok=True)
    doc = {"schema_version": 1, "gpu": key, "interpreter": interpreter,
           "provenance": {"capability": capability}, "buckets": buckets}
    path = directory / f"{key}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture(autouse=True)
def fresh_selector(monkeypatch, tmp_path):
    monkeypatch.setattr(selector, "_user_paths", [])
    monkeypatch.setattr(selector, "_warned", set())
    monkeypatch.setattr(selector, "SHIPPED_DIR", tmp_path / "shipped")
    monkeypatch.delenv(selector.CONFIG_DIR_ENV, raising=False)
    selector.clear_cache()
    yield
    selector.clear_cache()


def test_exact_gpu_nearest_length_in_log_space(tmp_path):
    write(tmp_path / "shipped", "h100", [bucket(1024, cfg(64)), bucket(5476, cfg(128)),
                                         bucket(64, cfg(32, 32, 2), regime="window")])
    assert selector.choose(H100, 80, torch.bfloat16, 4096).config == cfg(128)
    assert selector.choose(H100, 80, torch.bfloat16, 2000).config == cfg(64)
    window = selector.choose(H100, 80, torch.bfloat16, 64)
    assert window.config == cfg(32, 32, 2) and window.level == "exact GPU"
    assert window.path.endswith("h100.yaml") and window.tflops == pytest.approx(100.064)


def test_categorical_fields_are_exact():
    # nothing tuned for fp16 or head_dim 72: the built-in heuristic, not a bf16/d80 config
    choice = selector.choose(H100, 80, torch.float16, 4096)
    assert choice.level == "built-in heuristic"
    assert choice.config == default_config(80, torch.float16, H100.arch, 4096)


def test_fallback_to_same_architecture_then_heuristic(tmp_path):
    write(tmp_path / "shipped", "h100", [bucket(4096, cfg(64))])
    same = selector.choose(H200, 80, torch.bfloat16, 4096)
    assert same.level == "same architecture" and same.config == cfg(64)
    other = selector.choose(GB200, 80, torch.bfloat16, 4096)  # sm_100 does not take sm_90's
    assert other.level == "built-in heuristic"


def test_user_files_take_precedence(tmp_path, monkeypatch):
    write(tmp_path / "shipped", "h100", [bucket(4096, cfg(64))])
    write(tmp_path / "env", "h100", [bucket(4096, cfg(128))])
    monkeypatch.setenv(selector.CONFIG_DIR_ENV, str(tmp_path / "env"))
    selector.clear_cache()
    assert selector.choose(H100, 80, torch.bfloat16, 4096).config == cfg(128)
    selector.load_configs(write(tmp_path / "mine", "h100", [bucket(4096, cfg(256, 64, 8))]))
    assert selector.choose(H100, 80, torch.bfloat16, 4096).config == cfg(256, 64, 8)


def test_broken_file_warns_once_and_falls_back(tmp_path, caplog):
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    (shipped / "h100.yaml").write_text("buckets: [\n")
    with caplog.at_level(logging.WARNING):
        first = selector.choose(H100, 80, torch.bfloat16, 4096)
        selector.choose(H100, 80, torch.bfloat16, 300)  # another key: the file is not re-read
        selector.clear_cache()
        selector.choose(H100, 80, torch.bfloat16, 4096)  # re-read, but no second warning
    assert first.level == "built-in heuristic"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "h100.yaml" in warnings[0].getMessage()
    assert "not valid YAML" in warnings[0].getMessage()


def test_hostile_values_are_rejected(tmp_path, caplog):
    path = write(tmp_path / "shipped", "h100", [bucket(4096, cfg(64))])
    doc = yaml.safe_load(path.read_text())
    doc["buckets"][0]["config"]["block_m"] = 1 << 20  # would index far out of bounds
    path.write_text(yaml.safe_dump(doc))
    with caplog.at_level(logging.WARNING):
        assert selector.choose(H100, 80, torch.bfloat16, 4096).level == "built-in heuristic"
    assert "buckets[0].config.block_m: 1048576" in caplog.text


def test_load_configs_rejects_a_bad_file_at_once(tmp_path):
    bad = tmp_path / "h100.yaml"
    bad.write_text("schema_version: 7\n")
    with pytest.raises(ValueError, match=r"schema_version: expected one of \[1, 2\]"):
        selector.load_configs(bad)
    with pytest.raises(ValueError, match="no such file"):
        selector.load_configs(tmp_path / "nope")


def test_interpreter_and_gpu_files_never_mix(tmp_path):
    write(tmp_path / "shipped", "h100", [bucket(64, cfg(32, 32, 2), regime="window",
                                                dtype="float16", head_dim=32)],
          interpreter=True)
    assert selector.choose(H100, 32, torch.float16, 64).level == "built-in heuristic"


def test_vision_attention_uses_the_selected_config(tmp_path, monkeypatch):
    tuned = KernelConfig(block_m=32, block_n=32, num_warps=2, num_stages=3, head_split=False)
    write(tmp_path / "user", "interpreter", [bucket(20, tuned, regime="window",
                                                   dtype="float32", head_dim=32)],
          capability=None, interpreter=True)
    selector.load_configs(tmp_path / "user")
    seen = []
    import vitune.runtime.api as api

    monkeypatch.setattr(api, "run_launch",
                        lambda launch, q, k, v, out, cu, **kw: seen.append(launch.config) or out)
    q, k, v, cu = make_packed([20, 12], heads=1, head_dim=32, dtype=torch.float32)
    api.vision_attention(q, k, v, cu, max_seqlen=20)
    assert seen == [tuned]
    assert interpreter_identity().key == "interpreter"


def test_rotary_calls_take_buckets_tuned_with_rotary_first(tmp_path):
    rotary = {**bucket(5476, cfg(64, stages=3)), "rotary": True, "backend": "triton"}
    plain = {**bucket(5476, cfg(128)), "backend": "sdpa_cudnn"}
    write(tmp_path / "shipped", "h100", [plain, rotary])
    with_rotary = selector.choose(H100, 80, torch.bfloat16, 5476, rotary=True)
    assert with_rotary.config == cfg(64, stages=3) and with_rotary.rotary
    assert with_rotary.bucket == "full L5476 rotary"
    without = selector.choose(H100, 80, torch.bfloat16, 5476)
    assert without.config == cfg(128) and not without.rotary  # never a rotary bucket


def test_rotary_calls_fall_back_to_buckets_tuned_without(tmp_path, monkeypatch):
    write(tmp_path / "shipped", "h100", [{**bucket(5476, cfg(128)), "backend": "sdpa_cudnn"}])
    choice = selector.choose(H100, 80, torch.bfloat16, 5476, rotary=True)
    assert choice.config == cfg(128) and not choice.rotary
    from vitune.runtime import api

    monkeypatch.setattr(api, "device_gpu", lambda device: H100)
    # Its peer's win was measured without rotary: a rotary call runs the fused kernel.
    assert api._auto_backend_uncached("cuda", 0, 80, torch.bfloat16,
                                      selector.length_key(5476), True) == "triton"
    assert api._auto_backend_uncached("cuda", 0, 80, torch.bfloat16,
                                      selector.length_key(5476), False) == "sdpa_cudnn"


@pytest.mark.parametrize(("seqlen", "kernel", "peer", "expected"), [
    # H100 figures: at 1024 tokens the copy into out (~10%) costs SDPA its 10% lead...
    (1024, 329.0, 363.0, "triton"),
    # ...at 4096 the copy is ~3% of its time and a 10% lead survives it.
    (4096, 416.0, 460.4, "sdpa_cudnn"),
])
def test_files_without_the_out_measurement_estimate_the_copy(seqlen, kernel, peer, expected):
    """A bucket tuned before calls with out= were measured: the peer keeps them only if it
    still wins once its result is copied into out at the GPU's bandwidth."""
    old = {**bucket(seqlen, cfg(128)), "backend": "sdpa_cudnn", "tflops": kernel,
           "peers": {"sdpa-cudnn": peer, "varlen_attn": peer / 2}}
    assert selector.estimated_backend_with_out(old, H100) == expected
    unknown = identify("NVIDIA Quantum X1", (9, 0))  # no bandwidth known: vitune's kernel
    assert selector.estimated_backend_with_out(old, unknown) == "triton"
    assert selector.estimated_backend_with_out({**old, "backend": "triton"}, H100) == "triton"


def test_a_measured_backend_with_out_wins_over_the_estimate(tmp_path):
    measured = {**bucket(4096, cfg(128)), "backend": "sdpa_cudnn", "tflops": 416.0,
                "peers": {"sdpa-cudnn": 460.4}, "backend_with_out": "triton",
                "peers_with_out": {"sdpa-cudnn": 400.0}}
    write(tmp_path / "shipped", "h100", [measured])
    choice = selector.choose(H100, 80, torch.bfloat16, 4096)
    assert (choice.backend, choice.backend_with_out) == ("sdpa_cudnn", "triton")


def test_a_bucket_tuned_for_another_kernel_or_triton_warns_once_per_file_and_is_used(
        tmp_path, caplog):
    import triton

    from vitune.kernels.vision_attn.identity import kernel_hash

    current = {"kernel_hash": kernel_hash(), "triton": triton.__version__}
    old = {"kernel_hash": "0123456789ab", "triton": "3.6.0", "date": "2026-11-27"}
    stale_file = write(tmp_path / "shipped", "h100", [
        {**bucket(1024, cfg(64)), "provenance": old},
        {**bucket(4096, cfg(128)), "provenance": {**old, "kernel_hash": kernel_hash()}}])
    fresh_file = write(tmp_path / "user", "h200", [
        {**bucket(4096, cfg(32)), "provenance": current}])
    for path in (stale_file, fresh_file):
        doc = yaml.safe_load(path.read_text())
        path.write_text(yaml.safe_dump({**doc, "schema_version": 2, "provenance": {}}))
    selector.load_configs(fresh_file)
    with caplog.at_level(logging.WARNING):
        short = selector.choose(H100, 80, torch.bfloat16, 1024)
        long = selector.choose(H100, 80, torch.bfloat16, 4096)
        fresh = selector.choose(H200, 80, torch.bfloat16, 4096)
    assert short.config == cfg(64) and long.config == cfg(128)  # still used
    assert short.stale == (f"tuned for kernel 0123456789ab (installed {kernel_hash()}) and "
                           f"Triton 3.6.0 (installed {triton.__version__})")
    assert long.stale == f"tuned for Triton 3.6.0 (installed {triton.__version__})"
    assert fresh.stale is None and fresh.config == cfg(32)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # one per file, though two of its buckets were used
    assert str(stale_file) in warnings[0] and short.stale in warnings[0]
    assert "vitune tune" in warnings[0]


def test_a_version_1_file_is_judged_by_its_file_level_provenance(tmp_path, caplog):
    path = write(tmp_path / "shipped", "h100", [bucket(4096, cfg(64))])
    doc = yaml.safe_load(path.read_text())
    doc["provenance"].update(kernel_hash="0123456789ab")
    path.write_text(yaml.safe_dump(doc))
    with caplog.at_level(logging.WARNING):
        choice = selector.choose(H100, 80, torch.bfloat16, 4096)
    assert choice.config == cfg(64) and "kernel 0123456789ab" in choice.stale
    assert "kernel 0123456789ab" in caplog.text
