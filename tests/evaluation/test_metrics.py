"""Metrics against numbers worked out by hand from their definitions (docs/references.md, "Scoring")."""

from __future__ import annotations

import pytest

from t2t.errors import T2TError
from t2t.evaluation.metrics import METRICS, compute, get_metric, normalize_sni, normalize_squad, token_f1


def test_accuracy_is_exact_match_after_strip():
    assert compute(
        "accuracy", [" yes \n", "Yes", "no"], [["yes"], ["yes"], ["maybe", "no"]]
    ) == pytest.approx(200 / 3)


@pytest.mark.parametrize(
    ("prediction", "reference", "sni", "squad"),
    [
        ("The Cat!", "the cat", 100, 100),
        ("  the \t  cat\n", "the cat", 100, 100),
        ("a cat", "cat", 0, 100),  # SNI keeps articles, SQuAD drops them
        ("don't", "dont", 100, 100),  # punctuation inside words goes too
        ("theatre", "atre", 0, 0),  # articles are removed as whole words only
        ("cat.", "cats", 0, 0),
    ],
)
def test_exact_match_normalisations(prediction, reference, sni, squad):
    assert compute("exact_match", [prediction], [[reference]]) == sni
    assert compute("squad_em", [prediction], [[reference]]) == squad


def test_normalisers():
    assert normalize_sni("  An  Apple, the END. ") == "an apple the end"
    assert normalize_squad("  An  Apple, the END. ") == "apple end"


def test_token_f1_by_hand():
    # normalised: [cat, sat] vs [cat, sat, down] -> P = 1, R = 2/3, F1 = 2PR/(P+R) = 0.8
    assert token_f1("the cat sat", "a cat sat down") == pytest.approx(0.8)
    # bag overlap counts duplicates once per match: [cat, cat] vs [cat] -> P = 1/2, R = 1, F1 = 2/3
    assert token_f1("cat cat", "cat") == pytest.approx(2 / 3)
    assert token_f1("dog", "cat") == 0.0
    assert token_f1("the", "a") == 1.0  # both empty after normalisation (SQuAD v2 rule)
    assert token_f1("the", "cat") == 0.0
    # max over references, then mean over examples: (0.8 -> max(0, 0.8)) and 0 -> 40
    assert compute("f1", ["the cat sat", "dog"], [["bird", "a cat sat down"], ["cat"]]) == pytest.approx(40.0)


def test_rouge_l_by_hand():
    # LCS("the cat sat on the mat", "the cat on the mat") = 5 tokens: P = 5/5, R = 5/6, F = 10/11
    assert compute("rouge_l", ["the cat on the mat"], [["the cat sat on the mat"]]) == pytest.approx(
        1000 / 11
    )
    # max over references
    assert compute("rouge_l", ["the cat on the mat"], [["dog", "the cat sat on the mat"]]) == pytest.approx(
        1000 / 11
    )
    # stemming: cats -> cat, running / runs -> run ("cat" is too short to stem)
    assert compute("rouge_l", ["cats running"], [["cat runs"]]) == pytest.approx(100.0)
    # LCS 1 of 2 and 1 of 4 tokens: P = 1/2, R = 1/4, F = 1/3; mean with an exact match -> (1/3 + 1)/2
    assert compute("rouge_l", ["a b", "x"], [["b c d e"], ["x"]]) == pytest.approx(200 / 3)


def test_bleu_by_hand():
    assert compute("bleu", ["the cat sat on the mat"], [["the cat sat on the mat"]]) == pytest.approx(100.0)
    # one token wrong out of 6: n-gram precisions 5/6, 4/5, 3/4, 2/3, brevity penalty 1
    expected = 100 * (5 / 6 * 4 / 5 * 3 / 4 * 2 / 3) ** 0.25
    assert compute("bleu", ["a b c d e f"], [["a b c d e g"]]) == pytest.approx(expected)
    # multiple references and a different number of references per example
    assert compute("bleu", ["a b c d e f", "u v w x y z"], [["q", "a b c d e f"], ["u v w x y z"]]) == (
        pytest.approx(100.0)
    )


def test_unknown_metric_lists_known_names():
    with pytest.raises(T2TError) as err:
        get_metric("rougeL")
    message = str(err.value)
    assert "rouge_l" in message and "Did you mean 'rouge_l'" in message
    for name in METRICS:
        assert name in message


def test_bad_inputs_are_user_errors():
    with pytest.raises(T2TError, match="2 predictions but 1"):
        compute("accuracy", ["a", "b"], [["a"]])
    with pytest.raises(T2TError, match=r"references\[0\].*\[reference\]"):
        compute("accuracy", ["a"], ["a"])
    with pytest.raises(T2TError, match=r"references\[0\]"):
        compute("f1", ["a"], [[]])
    with pytest.raises(T2TError, match="no predictions"):
        compute("bleu", [], [])
