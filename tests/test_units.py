"""units: one place for parsing and formatting sizes, counts and ratios."""

from __future__ import annotations

import pytest

from ghostcli.units import format_input_size, format_speedup


@pytest.mark.parametrize(("speedup", "text"), [
    (1.35, "1.35x faster"), (1.0, "1.00x faster"), (1 / 1.35, "1.35x slower"), (0.5, "2.00x slower"),
    (float("nan"), "not measured"), (0.0, "not measured"),
])
def test_a_speed_ratio_says_faster_or_slower(speedup: float, text: str) -> None:
    assert format_speedup(speedup) == text


def test_input_sizes_keep_named_dimensions() -> None:
    assert format_input_size((3, 224, 224)) == "3x224x224"
    assert format_input_size(["batch", 3, 8, 8]) == "batchx3x8x8"
    assert format_input_size(()) == ""


def test_cpu_isa_names_the_extensions_that_decide_cnn_speed() -> None:
    from ghostcli.analysis.env import cpu_isa, isa_text

    assert cpu_isa({"avx2", "avx512f", "avx512_vnni", "fpu"}) == ["AVX2", "AVX-512", "VNNI"]
    assert isa_text(["AVX2", "AVX-512", "VNNI"]) == "AVX2, AVX-512, VNNI; no AMX"
    amx = cpu_isa({"avx2", "avx512f", "amx_tile", "amx_bf16", "amx_int8", "avx512_bf16"})
    assert amx == ["AVX2", "AVX-512", "AVX512-BF16", "AMX", "AMX-BF16", "AMX-INT8"] and "no AMX" not in isa_text(amx)
    assert isa_text([]) == "ISA unknown"
