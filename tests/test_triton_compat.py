"""Triton internals live in vitune.kernels.triton_compat alone, gated on the release: the
gates (a faked release), the one-time note on the search space's measured rules, and the
floor that pyproject.toml, the compat module and CI's floor lane must agree on."""

import logging
import re
from pathlib import Path

import pytest
import torch
import triton
import triton.language as tl

from vitune.kernels import triton_compat
from vitune.kernels.triton_compat import (
    MIN_TRITON,
    TRITON_VERSION,
    check_supported,
    interpreter_problem,
    note_rules_version,
    parse_version,
)
from vitune.kernels.vision_attn.launch import kernel_is_interpreted
from vitune.kernels.vision_attn.space import RULES_MEASURED_ON_TRITON

ROOT = Path(__file__).resolve().parent.parent


def test_release_strings_parse_to_numbers():
    assert parse_version("3.4.0") == (3, 4, 0)
    assert parse_version("3.5.0+git1a2b3c") == (3, 5, 0)
    assert parse_version("3.6.0rc1") == (3, 6, 0)
    assert parse_version("3.10") == (3, 10, 0)
    assert parse_version("3.10.1") > parse_version("3.9.9")  # (numbers, not text)
    with pytest.raises(ValueError, match="not a release number"):
        parse_version("nightly")


def test_a_release_below_the_floor_is_refused_naming_both():
    check_supported(TRITON_VERSION)  # (the installed one passed at import already)
    check_supported(MIN_TRITON)
    with pytest.raises(ImportError) as info:
        check_supported((3, 3, 1))
    message = str(info.value)
    assert "Triton >= 3.4.0" in message and "Triton 3.3.1 is installed" in message
    assert "tensor_descriptor" in message


def test_the_interpreter_gate_names_the_releases_that_work():
    problem = interpreter_problem((3, 4, 0), (2, 4, 1))
    assert problem is not None
    assert "Triton 3.4 interpreter" in problem and "NumPy 2.4" in problem
    assert "'numpy<2.4'" in problem and "'triton>=3.7'" in problem
    assert interpreter_problem((3, 4, 0), (2, 3, 5)) is None
    assert interpreter_problem((3, 6, 0), (2, 3, 5)) is None
    assert interpreter_problem((3, 7, 0), (2, 4, 0)) is None


def test_an_interpreter_that_cannot_run_the_kernels_fails_with_the_gate(monkeypatch):
    monkeypatch.setattr(triton_compat, "interpreter_problem", lambda: "no good")
    triton_compat.check_interpreter.cache_clear()
    try:
        with pytest.raises(triton_compat.TritonVersionError, match="no good"):
            triton_compat.check_interpreter()
    finally:
        triton_compat.check_interpreter.cache_clear()


@pytest.fixture
def rules_not_noted(monkeypatch):
    monkeypatch.setattr(triton_compat, "_rules_noted", False)


def _notes(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "miscompile rules" in r.getMessage()]


def test_rules_measured_on_another_release_are_noted_once(rules_not_noted, caplog):
    other = (3, 9, 0) if RULES_MEASURED_ON_TRITON != (3, 9) else (3, 8, 0)
    with caplog.at_level(logging.WARNING, logger=triton_compat.__name__):
        assert note_rules_version("hopper", other)
        assert not note_rules_version("hopper", other)
        assert not note_rules_version("blackwell", other)
    notes = _notes(caplog)
    assert len(notes) == 1
    measured = ".".join(map(str, RULES_MEASURED_ON_TRITON))
    assert f"Triton {measured} " in notes[0] and ".".join(map(str, other)) in notes[0]
    assert "hopper" in notes[0]


def test_no_note_where_the_rules_were_measured_or_do_not_apply(rules_not_noted, caplog):
    with caplog.at_level(logging.WARNING, logger=triton_compat.__name__):
        assert not note_rules_version("hopper", (*RULES_MEASURED_ON_TRITON, 1))
        assert not note_rules_version("ampere", (3, 9, 0))  # (no wgmma: no such rules)
        assert not note_rules_version("interpreter", (3, 9, 0))
    assert _notes(caplog) == []


def test_signature_vocabulary():
    assert triton_compat.pointer_type(torch.bfloat16) == "*bf16"
    assert triton_compat.descriptor_type(torch.float16, (64, 16)) == "tensordesc<fp16[64, 16]>"
    assert triton_compat.argument_names(add_one) == ["x_ptr", "n", "BLOCK"]


@triton.jit
def add_one(x_ptr, n, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    tl.store(x_ptr + offs, tl.load(x_ptr + offs, mask=offs < n) + 1, mask=offs < n)


def test_the_interpreter_is_told_from_the_kernel_object():
    import os

    interpreted = os.environ.get("TRITON_INTERPRET") == "1"
    assert triton_compat.is_interpreted(add_one) == interpreted
    assert kernel_is_interpreted() == interpreted


@pytest.mark.skipif(not kernel_is_interpreted(), reason="CPU lane (the interpreted kernel)")
def test_compiling_ahead_needs_the_compiled_kernel():
    with pytest.raises(RuntimeError, match="unset TRITON_INTERPRET"):
        triton_compat.compile_ahead(add_one, {}, {}, [], 90, 4, 1)


def test_a_descriptor_describes_the_view_it_was_given():
    x = torch.zeros(40, 2 * 64, dtype=torch.float16)
    desc = triton_compat.tensor_descriptor(x, [40, 2 * 64], [2 * 64, 1], [32, 64])
    assert list(desc.shape) == [40, 128] and list(desc.block_shape) == [32, 64]


def test_the_floor_is_one_release_everywhere():
    """pyproject's dependency, the compat module's gate and CI's floor lane name one
    release, so the lane tests what is declared."""
    floor = ".".join(map(str, MIN_TRITON[:2]))
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'"triton>=([\d.]+)"', pyproject).group(1) == floor
    ci = (ROOT / ".ci" / "run").read_text()
    lane = re.search(r"^FLOOR_TRITON=([\d.]+)$", ci, re.M)
    assert lane is not None, ".ci/run has no floor lane (FLOOR_TRITON=...)"
    assert parse_version(lane.group(1)) == MIN_TRITON


ALLOWED = {"jit", "language", "cdiv", "next_power_of_2", "__version__"}


def test_no_module_but_the_compat_one_reaches_into_triton():
    """The kernel language and launch helpers are free to use; anything else of Triton's
    (its runtime, compiler, drivers, tools, warm-up compiles) goes through triton_compat."""
    offenders = []
    for path in sorted((ROOT / "vitune").rglob("*.py")):
        if path.name == "triton_compat.py":
            continue
        text = path.read_text()
        for number, line in enumerate(text.splitlines(), 1):
            code = line.split("#")[0]
            used = set(re.findall(r"\btriton\.(\w+)", code))
            if re.search(r"^\s*from triton[\w.]* import", code) and \
                    "from triton.language" not in code:
                used.add("from-import")
            if re.search(r"\.warmup\(|set_active\(", code):
                used.add("warmup/driver")
            if used - ALLOWED:
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []
