"""Answer keys: equal values written differently compare equal, different values do not."""

from __future__ import annotations

from gateway.policy.answer_keys import answer_key


def test_keys_compare_values_not_spellings() -> None:
    """Equal answers written differently share a key; different answers do not."""
    assert answer_key("\\dfrac{1}{2}") == answer_key("0.5") == answer_key("$1/2$")
    assert answer_key("√51") == answer_key("sqrt(51)") == answer_key("\\sqrt{51}")
    assert answer_key("90 degrees") == answer_key("90^\\circ") == answer_key("90")
    assert answer_key("(-1)/49") == answer_key("-\\frac{1}{49}")
    assert answer_key("x = 5") == answer_key("5")
    assert answer_key("6.18") != answer_key("6.17")
