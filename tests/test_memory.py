import pytest

from keras_medyate import memory


@pytest.mark.parametrize(
    "budget, units",
    [
        (15936, 15936),
        ("15936", 15936),
        ("15936 units", 15936),
        ("110KB", 110 * 1024 // 4),
        ("110 KiB", 110 * 1024 // 4),
        ("0.5MB", 131072),
        ("65536B", 16384),
        (2.0, 2),
    ],
)
def test_parse_budget_accepts_units_and_sizes(budget, units):
    assert memory.parse_budget(budget) == units


def test_parse_budget_bytes_per_element():
    assert memory.parse_budget("1KB", bytes_per_element=1) == 1024
    assert memory.parse_budget("1KB", bytes_per_element=2) == 512


@pytest.mark.parametrize(
    "budget, message",
    [
        ("lots", "Could not parse the budget 'lots'"),
        ("10 parsecs", "Unknown size suffix 'parsecs'"),
        (-5, "must be positive"),
        (0, "must be positive"),
        (1.5, "whole number"),
        ("1.5 units", "whole number"),
        (None, "got NoneType"),
        (True, "got True"),
    ],
)
def test_parse_budget_errors_name_the_value(budget, message):
    with pytest.raises(ValueError, match=message):
        memory.parse_budget(budget)


def test_format_units():
    assert memory.format_units(15936) == "15,936 units (62.2 KB)"
    assert memory.format_units(1_309_808) == "1,309,808 units (5.00 MB)"
