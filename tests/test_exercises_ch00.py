import pytest

from minigpt.exercises.ch00 import check_top_k_tokens


def test_accepts_a_right_answer(capsys):
    def top_k_tokens(logits, k):
        top = logits.softmax(-1).topk(k)
        return top.indices.tolist(), top.values.tolist()

    check_top_k_tokens(top_k_tokens)
    assert "Correct" in capsys.readouterr().out


def test_rejects_wrong_answers():
    def unsorted(logits, k):  # right set, wrong order
        top = logits.softmax(-1).topk(k)
        return top.indices.flip(0).tolist(), top.values.flip(0).tolist()

    def logits_not_probs(logits, k):
        top = logits.topk(k)
        return top.indices.tolist(), top.values.tolist()

    with pytest.raises(AssertionError, match="most likely first"):
        check_top_k_tokens(unsorted)
    with pytest.raises(AssertionError, match="softmax"):
        check_top_k_tokens(logits_not_probs)
