import pytest

from minigpt.exercises.ch05 import check_layer_norm, check_parameter_count


def layer_norm(x, w, b, eps):
    centred = x - x.mean(-1, keepdim=True)
    return centred / (centred.pow(2).mean(-1, keepdim=True) + eps).sqrt() * w + b


def count(cfg):
    d, m = cfg.d_model, cfg.d_mlp
    block = 4 * d * d + 4 * d + 2 * d * m + m + d + 4 * d
    return cfg.d_vocab * d + cfg.n_ctx * d + cfg.n_layers * block + 2 * d


def test_accepts_right_answers(capsys):
    check_layer_norm(layer_norm)
    check_parameter_count(count)
    assert capsys.readouterr().out.count("Correct") == 2


def test_rejects_wrong_answers():
    def bessel(x, w, b, eps):
        centred = x - x.mean(-1, keepdim=True)
        return centred / (centred.var(-1, keepdim=True) + eps).sqrt() * w + b

    with pytest.raises(AssertionError, match="biased variance"):
        check_layer_norm(bessel)
    with pytest.raises(AssertionError, match="expected"):
        check_layer_norm(lambda x, w, b, eps: layer_norm(x, w, b, eps) - b)  # forgot the bias
    with pytest.raises(AssertionError, match="W_U and b_U"):
        check_parameter_count(lambda cfg: count(cfg) + cfg.d_model * cfg.d_vocab + cfg.d_vocab)
    with pytest.raises(AssertionError, match="off by"):
        check_parameter_count(lambda cfg: count(cfg) - 2 * cfg.d_model)  # forgot ln_final
