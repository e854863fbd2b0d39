"""Crediting policies: formulas, exact sums, refusals (pure, no database)."""

from __future__ import annotations

from fractions import Fraction

import pytest

from ledger import PolicyInputError, largest_remainder, split_query, to_micros
from tests.ledger.helpers import query

ALL = {"alpha", "beta", "gamma"}
SHARE = {"alpha": 10, "beta": 20, "gamma": 30}


def test_largest_remainder_adds_up_exactly():
    parts = largest_remainder(1_000_000, {"a": 1, "b": 1, "c": 1})
    assert sum(parts.values()) == 1_000_000 and sorted(parts.values()) == [333_333, 333_333, 333_334]
    assert parts["a"] == 333_334  # ties go to the first key
    for total in (1, 7, 999_999, 123_456_789):
        w = {"x": Fraction(1, 3), "y": Fraction(2, 7), "z": Fraction(5, 11)}
        assert sum(largest_remainder(total, w).values()) == total


def test_topk_share_is_proportional_to_positive_scores():
    parts, basis = split_query(
        query("q", "1", [("alpha", 3.0), ("beta", 1.0), ("gamma", -2.0)]), "topk_share", ALL, SHARE
    )
    assert basis == "topk_share" and parts == {"alpha": 750_000, "beta": 250_000}


def test_positive_share_uses_all_examples_sums():
    q = query("q", "3", [("alpha", 1.0), ("beta", 2.0)])
    q.provider_positive = {"alpha": 1.0, "beta": 2.0, "gamma": 3.0}  # gamma: outside the top-k
    parts, basis = split_query(q, "positive_share", ALL, SHARE)
    assert basis == "positive_share" and parts == {"alpha": 500_000, "beta": 1_000_000, "gamma": 1_500_000}


def test_no_positive_score_falls_back_to_corpus_share_and_says_so():
    parts, basis = split_query(query("q", "0.6", [("gamma", -1.0)]), "topk_share", ALL, SHARE)
    assert basis == "fallback_pro_rata" and parts == {"alpha": 100_000, "beta": 200_000, "gamma": 300_000}


def test_ineligible_providers_get_nothing():
    parts, _ = split_query(
        query("q", "1", [("alpha", 3.0), ("beta", 1.0)]), "topk_share", {"beta", "gamma"}, SHARE, ALL
    )
    assert parts == {"beta": 1_000_000}


@pytest.mark.parametrize(
    ("q", "match"),
    [
        (query("q", "1", [("alpha", float("nan"))]), "nan"),
        (query("q", "1", [("alpha", float("inf"))]), "inf"),
        (query("q", "-1", [("alpha", 1.0)]), ">= 0"),
        (query("q", "abc", [("alpha", 1.0)]), "not a number"),
        (query("q", "1", [("zeta", 1.0)]), "unknown provider"),
    ],
)
def test_bad_inputs_are_refused(q, match):
    with pytest.raises(PolicyInputError, match=match):
        split_query(q, "topk_share", ALL, SHARE)


def test_values_convert_exactly():
    assert to_micros("0.1", "x") == 100_000 and to_micros(2, "x") == 2_000_000
    assert to_micros("1.0000005", "x") == 1_000_000  # half-even at the ledger's precision
