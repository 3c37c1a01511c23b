"""Plain-text matching for recall without a vector index, for "forget X" and for spotting duplicates."""

from __future__ import annotations

import re

_WORD = re.compile(r"[^\W_]+", re.UNICODE)

_STOPWORDS_TEXT = """a an and are as at be been but by can could do does did for from had has have he her
him his how i i'm im is it its me my mine myself of on or our she so than that the their them they this to too
us was we were what when where which who why will with would you your yours about anything something user
users remember remembered know knows forget please again also just that's thing things"""
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())


def _normal(word: str) -> str:
    word = word.lower()
    if word.endswith("'s"):
        word = word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
    return word


def terms(text: str) -> frozenset[str]:
    """The significant words of `text`, lower-cased and crudely singularised."""
    words = (_normal(w) for w in _WORD.findall(text.replace("’", "'")))
    return frozenset(w for w in words if w and w not in STOPWORDS)


def keyword_score(query: str | frozenset[str], text: str) -> float:
    """The share of the query's significant words (or of these terms) found in `text`; 0 if none."""
    wanted = terms(query) if isinstance(query, str) else query
    if not wanted:
        return 0.0
    return len(wanted & terms(text)) / len(wanted)


def same_words(a: str, b: str) -> bool:
    """Whether two facts say the same thing in the same words (case, punctuation and plurals aside)."""
    ta, tb = terms(a), terms(b)
    return bool(ta) and ta == tb
