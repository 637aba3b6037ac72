"""Sentence splitting and lexical scoring for the extractive model.

Deliberately small and dependency-free: the extractive model must work on a
laptop with nothing but the core installed, and must give the same answer for
the same input every time.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])|\n{2,}|\n(?=\s*[-*\d#])")
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")
_STOPWORDS = """
a an and are as at be been but by can could did do does for from had has have how i if in
into is it its me my no not of on or our so than that the their them then there these they
this to too us was we were what when where which who whom why will with would you your
"""
STOPWORDS = frozenset(_STOPWORDS.split())


def split_sentences(text: str) -> list[str]:
    """Split prose into sentences; markdown bullets and headings count as their own."""
    parts = (p.strip() for p in _SENTENCE_END.split(text))
    return [" ".join(p.split()) for p in parts if p and _WORD.search(p)]


def terms(text: str) -> list[str]:
    """Lower-cased content words with a crude plural fold ("replicas" ~ "replica")."""
    out = []
    for word in _WORD.findall(text.lower()):
        if word in STOPWORDS:
            continue
        if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        out.append(word)
    return out


def lexical_scores(question: str, sentences: Sequence[str]) -> list[float]:
    """Overlap of the question's terms with each sentence, weighted by rarity (idf).

    Normalised by the square root of the sentence length so that long sentences
    do not win by sheer size.
    """
    query = set(terms(question))
    if not query or not sentences:
        return [0.0] * len(sentences)
    bags = [Counter(terms(s)) for s in sentences]
    n = len(bags)
    df = Counter(t for bag in bags for t in bag)
    scores = []
    for bag in bags:
        hit = sum(math.log(1.0 + n / df[t]) for t in query if t in bag)
        scores.append(hit / math.sqrt(1 + sum(bag.values())))
    return scores


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0
