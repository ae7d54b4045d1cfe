import pytest

from minigpt.exercises.ch02 import check_embed_tokens


def test_accepts_a_right_answer(capsys):
    check_embed_tokens(lambda tokens, W_E, W_pos: W_E[tokens] + W_pos[: tokens.shape[1]])
    assert "Correct" in capsys.readouterr().out


def test_rejects_wrong_answers():
    with pytest.raises(AssertionError, match="add the positional embedding"):
        check_embed_tokens(lambda tokens, W_E, W_pos: W_E[tokens])
    with pytest.raises(AssertionError, match="shape"):
        check_embed_tokens(lambda tokens, W_E, W_pos: W_E[tokens][0])
    with pytest.raises(AssertionError, match=r"W_E\[token\] \+ W_pos\[p\]"):  # positions reversed
        check_embed_tokens(
            lambda tokens, W_E, W_pos: W_E[tokens] + W_pos[: tokens.shape[1]].flip(0)
        )
