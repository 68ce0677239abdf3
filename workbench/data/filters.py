"""Text clean-up and rule-based quality filters for pretraining documents (Gopher / C4 style).

    from workbench.data.filters import FilterConfig, normalise_text, clean_lines, quality_check
    cfg = FilterConfig()
    text = normalise_text(raw, cfg)                  # NFC, whitespace, control characters
    text, dropped = clean_lines(text, cfg)           # boilerplate lines removed: {reason: count}
    keep, reason = quality_check(Doc(text), cfg)     # first doc-level filter that fails, or (True, "")

Every filter is a small pure function `Doc -> (keep, reason)`; `FILTERS` lists them in the order
they run and `FilterConfig` holds every threshold (0 or None turns a bound off). Defaults follow
Gopher (Rae et al. 2021, appendix A) and C4 (Raffel et al. 2020), with two deliberate departures
so our own data survives: `min_words` is 5, not 50 (the sample corpus has one-sentence facts), and
C4's "drop every line containing 'javascript'" became a list of boilerplate phrases ("enable
javascript", "cookie policy"...), so a page *about* JavaScript is kept. Run
`workbench data prepare` and read report.md to see what each filter removed.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

BOILERPLATE = (
    "javascript is disabled", "enable javascript", "javascript is required", "javascript required",
    "requires javascript", "javascript must be enabled", "turn on javascript",
    "we use cookies", "uses cookies", "use of cookies", "cookie policy", "accept cookies",
    "accept all cookies", "terms of use", "terms of service", "privacy policy",
    "all rights reserved", "sign up for our newsletter", "subscribe to our newsletter",
)
BULLETS = ("•", "-", "*", "‣", "◦", "⁃", "●", "▪", "–", "·")
TERMINAL = (".", "!", "?", '"', "'", "”", "’", "…", ")")


@dataclass
class FilterConfig:
    # --- normalise ---
    nfc: bool = True
    strip_control: bool = True  # control characters (not \n \t), zero-width space, BOM, soft hyphen
    collapse_spaces: bool = False  # runs of spaces/tabs inside lines -> one space (breaks code indentation)
    max_blank_lines: int = 1  # longer runs of blank lines are shortened to this
    # --- line filters (lines removed, the document kept) ---
    boilerplate: bool = True
    boilerplate_phrases: list[str] = field(default_factory=lambda: list(BOILERPLATE))
    # --- document filters (whole document removed) ---
    enabled: bool = True
    min_words: int = 5
    max_words: int = 100_000
    min_mean_word_length: float = 3.0
    max_mean_word_length: float = 10.0
    max_symbol_word_ratio: float = 0.1  # '#' and '...' per word
    max_bullet_lines: float = 0.9
    max_ellipsis_lines: float = 0.3
    min_alpha_words: float = 0.8  # words with at least one alphabetic character
    min_punct_lines: float = 0.12  # lines ending in terminal punctuation (FineWeb's C4-style bound)
    max_dup_lines: float = 0.3
    max_dup_line_chars: float = 0.2
    max_dup_paragraphs: float = 0.3
    max_dup_paragraph_chars: float = 0.2
    max_top_ngram_chars: dict = field(default_factory=lambda: {2: 0.20, 3: 0.18, 4: 0.16})
    max_dup_ngram_chars: dict = field(default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12,
                                                               9: 0.11, 10: 0.10})
    drop_lorem_ipsum: bool = True
    drop_curly_brace: bool = True  # C4: '{' means code or templates


# ---------------------------------------------------------------- normalise

_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\ufeff\u00ad\u2060"))
_LETTER = re.compile(r"[^\W\d_]")
_CONTROL_RE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b\ufeff\u00ad\u2060]")
_TRAILING = re.compile(r"[ \t]+(?=\n|$)")
_NEWLINES = re.compile(r"\r\n?|[\u2028\u2029\x0b\x0c\x85]")
_SPACES = re.compile(r"[^\S\n\t]")  # every whitespace except newline and tab (NBSP, em space, ...)


# Unicode category Cc is exactly U+0000-U+001F and U+007F-U+009F; keep \t and \n.
_CONTROL = {c: None for c in [*range(0, 32), *range(127, 160)] if c not in (9, 10)} | _ZERO_WIDTH


def normalise_text(text: str, cfg: FilterConfig) -> str:
    """NFC, one newline convention, no control characters, no trailing spaces, short blank runs."""
    if cfg.nfc and not text.isascii():
        text = unicodedata.normalize("NFC", text)
    text = _NEWLINES.sub("\n", text)
    if cfg.strip_control and _CONTROL_RE.search(text):
        text = text.translate(_CONTROL)
    if not text.isascii() or "\t" in text or "  " in text:
        text = _SPACES.sub(" ", text)
    if cfg.collapse_spaces:
        text = re.sub(r"[ \t]+", " ", text)
    text = _TRAILING.sub("", text)
    if cfg.max_blank_lines >= 0:
        text = re.sub(r"\n{%d,}" % (cfg.max_blank_lines + 2), "\n" * (cfg.max_blank_lines + 1), text)
    return text.strip()


def clean_lines(text: str, cfg: FilterConfig) -> tuple[str, Counter]:
    """Remove boilerplate lines (cookie notices, "enable JavaScript", ...); count them by phrase."""
    dropped: Counter = Counter()
    if not cfg.boilerplate or not cfg.boilerplate_phrases:
        return text, dropped
    low = text.lower()
    if not any(p in low for p in cfg.boilerplate_phrases):
        return text, dropped
    kept = []
    for line in text.split("\n"):
        lower = line.lower()
        hit = next((p for p in cfg.boilerplate_phrases if p in lower), None)
        if hit is None:
            kept.append(line)
        else:
            dropped[hit] += 1
    return re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip(), dropped


# ---------------------------------------------------------------- document filters

class Doc:
    """A document's text with its words, lines and paragraphs computed once, on first use."""

    def __init__(self, text: str):
        self.text = text

    @functools.cached_property
    def words(self) -> list[str]:
        return self.text.split()

    @functools.cached_property
    def lines(self) -> list[str]:
        return [line.strip() for line in self.text.split("\n") if line.strip()]

    @functools.cached_property
    def paragraphs(self) -> list[str]:
        return [p.strip() for p in re.split(r"\n\s*\n", self.text) if p.strip()]

    @functools.cached_property
    def norm_words(self) -> list[str]:
        """Lower-cased words without punctuation: what the n-gram filters compare."""
        return re.findall(r"\w+", self.text.lower())


Verdict = tuple[bool, str]
KEEP: Verdict = (True, "")


def _within(value: float, low, high, what: str) -> Verdict:
    """A bound that is 0 or None is off."""
    if low and value < low:
        return False, f"{what} below {low}"
    if high and value > high:
        return False, f"{what} above {high}"
    return KEEP


def word_count(doc: Doc, cfg: FilterConfig) -> Verdict:
    n = len(doc.words)
    if cfg.min_words and n < cfg.min_words:
        return False, f"fewer than {cfg.min_words} words"
    if cfg.max_words and n > cfg.max_words:
        return False, f"more than {cfg.max_words} words"
    return KEEP


def mean_word_length(doc: Doc, cfg: FilterConfig) -> Verdict:
    mean = sum(map(len, doc.words)) / max(len(doc.words), 1)
    return _within(mean, cfg.min_mean_word_length, cfg.max_mean_word_length, "mean word length")


def symbol_ratio(doc: Doc, cfg: FilterConfig) -> Verdict:
    symbols = doc.text.count("#") + doc.text.count("...") + doc.text.count("…")
    if cfg.max_symbol_word_ratio is not None and symbols > cfg.max_symbol_word_ratio * max(len(doc.words), 1):
        return False, f"symbol-to-word ratio above {cfg.max_symbol_word_ratio}"
    return KEEP


def bullet_and_ellipsis_lines(doc: Doc, cfg: FilterConfig) -> Verdict:
    n = max(len(doc.lines), 1)
    if cfg.max_bullet_lines is not None and sum(line.startswith(BULLETS) for line in doc.lines) > cfg.max_bullet_lines * n:
        return False, f"more than {cfg.max_bullet_lines:.0%} of lines are bullets"
    if cfg.max_ellipsis_lines is not None and \
            sum(line.endswith(("...", "…")) for line in doc.lines) > cfg.max_ellipsis_lines * n:
        return False, f"more than {cfg.max_ellipsis_lines:.0%} of lines end with an ellipsis"
    return KEEP


def alpha_words(doc: Doc, cfg: FilterConfig) -> Verdict:
    alpha = sum(1 for w in doc.words if _LETTER.search(w))
    if cfg.min_alpha_words and alpha < cfg.min_alpha_words * len(doc.words):
        return False, f"fewer than {cfg.min_alpha_words:.0%} of words alphabetic"
    return KEEP


def punctuated_lines(doc: Doc, cfg: FilterConfig) -> Verdict:
    ended = sum(line.endswith(TERMINAL) for line in doc.lines)
    if cfg.min_punct_lines and ended < cfg.min_punct_lines * len(doc.lines):
        return False, f"fewer than {cfg.min_punct_lines:.0%} of lines end with punctuation"
    return KEEP


def _dup_fractions(items: list[str]) -> tuple[float, float]:
    """(fraction of items that repeat an earlier one, fraction of their characters)."""
    seen, dup, dup_chars = set(), 0, 0
    for item in items:
        if item in seen:
            dup += 1
            dup_chars += len(item)
        seen.add(item)
    total_chars = sum(map(len, items)) or 1
    return dup / max(len(items), 1), dup_chars / total_chars


def duplicate_lines(doc: Doc, cfg: FilterConfig) -> Verdict:
    frac, chars = _dup_fractions(doc.lines)
    if cfg.max_dup_lines is not None and frac > cfg.max_dup_lines:
        return False, f"duplicate lines above {cfg.max_dup_lines:.0%}"
    if cfg.max_dup_line_chars is not None and chars > cfg.max_dup_line_chars:
        return False, f"duplicate-line characters above {cfg.max_dup_line_chars:.0%}"
    frac, chars = _dup_fractions(doc.paragraphs)
    if cfg.max_dup_paragraphs is not None and frac > cfg.max_dup_paragraphs:
        return False, f"duplicate paragraphs above {cfg.max_dup_paragraphs:.0%}"
    if cfg.max_dup_paragraph_chars is not None and chars > cfg.max_dup_paragraph_chars:
        return False, f"duplicate-paragraph characters above {cfg.max_dup_paragraph_chars:.0%}"
    return KEEP


def repeated_ngrams(doc: Doc, cfg: FilterConfig) -> Verdict:
    """Gopher's repetition filters over lower-cased words.

    top n-gram (n=2..4): characters in all occurrences of the most frequent n-gram / all word characters;
    duplicate n-grams (n=5..10): characters of words covered by any n-gram that occurs twice or more.
    Vectorised: each n-gram is a 64-bit rolling hash of word ids (collisions: ~n^2 / 2^64, negligible).
    """
    words = doc.norm_words
    if len(words) < 2:
        return KEEP
    vocab: dict[str, int] = {}
    ids = np.fromiter((vocab.setdefault(w, len(vocab)) for w in words), np.uint64, len(words))
    if len(vocab) == len(words):
        return KEEP  # no word repeats, so no n-gram does
    lens = np.fromiter(map(len, words), np.int64, len(words))
    total = int(lens.sum())
    mult = np.uint64(0x9E3779B97F4A7C15)
    h = ids.copy()
    for n in range(2, max([*cfg.max_top_ngram_chars, *cfg.max_dup_ngram_chars, 1]) + 1):
        if len(words) < n:
            break
        h = h[:-1] * mult + ids[n - 1:] + np.uint64(1)  # hash of words[i:i+n], wrapping
        _, first, inv, counts = np.unique(h, return_index=True, return_inverse=True, return_counts=True)
        if counts.max() < 2:
            break  # no repeated n-gram: no longer one repeats either
        bound = cfg.max_top_ngram_chars.get(n)
        if bound is not None:
            top = int(counts.argmax())
            p = int(first[top])
            if counts[top] * int(lens[p:p + n].sum()) > bound * total:
                return False, f"top {n}-gram covers more than {bound:.0%} of characters"
        bound = cfg.max_dup_ngram_chars.get(n)
        if bound is not None:
            dup = counts[inv.reshape(-1)] > 1
            covered = np.zeros(len(words), bool)
            for k in range(n):
                covered[k:k + len(dup)] |= dup
            if int(lens[covered].sum()) > bound * total:
                return False, f"duplicate {n}-grams cover more than {bound:.0%} of characters"
    return KEEP


def c4_markers(doc: Doc, cfg: FilterConfig) -> Verdict:
    if cfg.drop_lorem_ipsum and "lorem ipsum" in doc.text.lower():
        return False, "contains 'lorem ipsum'"
    if cfg.drop_curly_brace and "{" in doc.text:
        return False, "contains '{' (code or template)"
    return KEEP


# Cheap checks first: most documents that fail, fail early.
FILTERS = (word_count, c4_markers, mean_word_length, symbol_ratio, alpha_words,
           bullet_and_ellipsis_lines, punctuated_lines, duplicate_lines, repeated_ngrams)


def quality_check(doc: Doc, cfg: FilterConfig) -> Verdict:
    """(True, "") if every filter keeps the document, else (False, the first failing reason)."""
    if not cfg.enabled:
        return KEEP
    for check in FILTERS:
        keep, reason = check(doc, cfg)
        if not keep:
            return False, reason
    return KEEP
