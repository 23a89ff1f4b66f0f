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
