"""Text metrics for evaluation, looked up by name.

Every metric takes ``predictions`` (one string per example) and ``references`` (one *list* of
reference strings per example) and returns one corpus score on a 0-100 scale, as T0, FLAN and
Super-NaturalInstructions report them. Per-example metrics take the best reference for each example
(max over references) and average over examples::

    >>> compute("accuracy", ["yes", " no"], [["yes"], ["maybe"]])
    50.0
    >>> compute("squad_em", ["The Cat!"], [["cat"]])
    100.0

Names and definitions (sources: SNI's ``eval/automatic/evaluation.py``, SQuAD v1.1's official evaluation
script, Google's ``rouge_score``; docs/references.md, "Scoring"):

``accuracy``     exact string match after ``strip()``; the rank-classification metric.
``exact_match``  SNI normalisation: lowercase, drop ASCII punctuation, collapse whitespace (articles kept).
``squad_em``     SQuAD normalisation: as ``exact_match`` and also drop the articles a / an / the.
``f1``           SQuAD token F1 on the SQuAD-normalised tokens (bag-of-tokens overlap). Two empty
                 answers score 100 (SQuAD v2 rule), one empty answer scores 0.
``rouge_l``      ROUGE-L F-measure from Google's ``rouge_score`` with ``use_stemmer=True``. Its tokenizer
                 keeps only ``[a-z0-9]`` after lowercasing, so non-Latin text scores 0 (SNI's
                 cross-lingual tokenizer is not implemented).
``cot_exact_match`` chain of thought: the answer extracted from each text by the CoT rule (the text after the
                 last "the answer is" / "answer:" / "####", first line, trailing period dropped; no marker: the
                 whole text; :mod:`t2t.tasks.cot`), then ``exact_match``: ``"... So the answer is (C)."`` vs ``C``.
``bleu``         sacrebleu corpus BLEU (13a tokenizer, exp smoothing) with every reference of an
                 example; examples may have different numbers of references. Corpus-level, so not an
                 average of sentence scores, and a sentence shorter than 4 tokens has no 4-grams.

The registry is a plain dict built at import from the functions below; nothing registers itself.
"""

from __future__ import annotations

import difflib
import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from t2t.errors import T2TError
from t2t.tasks.cot import extract_answer

Predictions = Sequence[str]
References = Sequence[Sequence[str]]

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_sni(text: str) -> str:
    """SNI / SQuAD normalisation without article removal: lowercase, no punctuation, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(text.split())


def normalize_squad(text: str) -> str:
    """SQuAD normalisation: lowercase, no punctuation, no articles a/an/the, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD token F1 in [0, 1] between one prediction and one reference."""
    pred, ref = normalize_squad(prediction).split(), normalize_squad(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    same = sum((Counter(pred) & Counter(ref)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def _max_over_references(score: Callable[[str, str], float]) -> Callable[[Predictions, References], list[float]]:
    """Lift a (prediction, reference) -> [0, 1] score to per-example scores x100, max over references."""

    def per_example(predictions: Predictions, references: References) -> list[float]:
        return [100.0 * max(score(p, r) for r in refs) for p, refs in zip(predictions, references, strict=True)]

    return per_example


def _accuracy(prediction: str, reference: str) -> float:
    return float(prediction.strip() == reference.strip())


def _exact_match(prediction: str, reference: str) -> float:
    return float(normalize_sni(prediction) == normalize_sni(reference))


def _squad_em(prediction: str, reference: str) -> float:
    return float(normalize_squad(prediction) == normalize_squad(reference))


def _cot_exact_match(prediction: str, reference: str) -> float:
    return float(normalize_sni(extract_answer(prediction)) == normalize_sni(extract_answer(reference)))


def _rouge_l_examples(predictions: Predictions, references: References) -> list[float]:
    # Imported here: rouge_score pulls in nltk, which is slow to import and only needed for ROUGE.
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    # RougeScorer.score takes (target, prediction) in that order.
    return [100.0 * max(scorer.score(r, p)["rougeL"].fmeasure for r in refs)
            for p, refs in zip(predictions, references, strict=True)]


def bleu(predictions: Predictions, references: References) -> float:
    import sacrebleu  # ~0.2 s, and only BLEU needs it: evaluate --help stays fast

    # sacrebleu wants reference *streams* (the k-th reference of every example); None marks an
    # example with fewer references.
    width = max(len(refs) for refs in references)
    streams = [[refs[k] if k < len(refs) else None for refs in references] for k in range(width)]
    return float(sacrebleu.corpus_bleu(list(predictions), streams).score)


@dataclass(frozen=True)
class Metric:
    """A metric is either an average of per-example scores (``per_example``) or corpus-level (``corpus``)."""

    name: str
    description: str
    per_example: Callable[[Predictions, References], list[float]] | None = None
    corpus: Callable[[Predictions, References], float] | None = None

    def fn(self, predictions: Predictions, references: References) -> float:
        if self.corpus is not None:
            return self.corpus(predictions, references)
        values = self.per_example(predictions, references)
        return sum(values) / len(values)


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("accuracy", "exact match after strip()", _max_over_references(_accuracy)),
        Metric("exact_match", "SNI-normalised exact match (articles kept)", _max_over_references(_exact_match)),
        Metric("squad_em", "SQuAD-normalised exact match (articles removed)", _max_over_references(_squad_em)),
        Metric("f1", "SQuAD token F1, max over references", _max_over_references(token_f1)),
        Metric("cot_exact_match", "exact match of the answers extracted by the CoT rule",
               _max_over_references(_cot_exact_match)),
        Metric("rouge_l", "ROUGE-L F-measure, stemmed, max over references", _rouge_l_examples),
        Metric("bleu", "sacrebleu corpus BLEU, multiple references", corpus=bleu),
    )
}


def get_metric(name: str) -> Metric:
    """The metric called ``name``; an unknown name raises T2TError listing the known ones."""
    try:
        return METRICS[name]
    except KeyError:
        close = difflib.get_close_matches(name, METRICS, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise T2TError(
            f"unknown metric '{name}'.{hint} Known metrics: {', '.join(METRICS)}; "
            "fix the metric name in the task file or the --metrics option."
        ) from None


def compute(name: str, predictions: Predictions, references: References) -> float:
    """Score ``predictions`` against ``references`` (a list of reference strings per example), x100."""
    metric = get_metric(name)
    _check_inputs(name, predictions, references)
    return metric.fn(predictions, references)


def example_scores(name: str, predictions: Predictions, references: References) -> list[float] | None:
    """Per-example scores x100 whose mean is :func:`compute`'s result; None for a corpus-level metric (BLEU)."""
    metric = get_metric(name)
    _check_inputs(name, predictions, references)
    return metric.per_example(predictions, references) if metric.per_example is not None else None


def _check_inputs(name: str, predictions: Predictions, references: References) -> None:
    if len(predictions) != len(references):
        raise T2TError(
            f"metric '{name}': {len(predictions)} predictions but {len(references)} reference lists; "
            "pass one list of references per prediction."
        )
    if not predictions:
        raise T2TError(f"metric '{name}': no predictions to score; evaluate at least one example.")
    for i, refs in enumerate(references):
        # A bare string is iterable, so it would silently be scored character by character.
        if isinstance(refs, str) or not refs:
            raise T2TError(
                f"metric '{name}': references[{i}] must be a non-empty list of strings, got {refs!r}; "
                "wrap a single reference as [reference]."
            )
