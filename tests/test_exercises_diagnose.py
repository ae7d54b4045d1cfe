"""The checkers' shared diagnosis (minigpt.exercises.diagnose)."""

import operator

import torch

from minigpt.exercises.diagnose import close, matching_mistake


def test_the_first_matching_mistake_names_the_cause():
    mistakes = [([3, 4], "swapped"), ([4, 3], "no merge"), ([4, 3], "a later twin")]
    assert matching_mistake([4, 3], mistakes, operator.eq) == "no merge"
    assert matching_mistake([9], mistakes, operator.eq) is None


def test_close_compares_shapes_and_values_within_tolerance():
    a = torch.zeros(2, 3)
    same = close(atol=1e-4)
    assert same(a, a + 5e-5) and not same(a, a + 2e-4)
    assert not same(a, torch.zeros(3, 2))  # a transposed answer is not the same answer
    assert close(atol=0, rtol=1e-3)(torch.ones(2), torch.ones(2) * 1.0005)
