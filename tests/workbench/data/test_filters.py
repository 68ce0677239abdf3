"""Normalisation, line and document filters (kept and removed cases), PII scrubbing."""

import pytest

from workbench.data import filters as F
from workbench.data.filters import Doc, FilterConfig, clean_lines, normalise_text, quality_check
from workbench.data.pii import PIIConfig, scrub

CFG = FilterConfig()
GOOD = ("The river runs past the old mill, and the miller's daughter counts the boats each morning. "
        "She writes their names in a small book that her grandfather gave her.\n\n"
        "In winter the water freezes, and the children skate from one bank to the other. "
        "Nobody remembers a year when the ice failed to come.")


def test_good_document_passes_every_filter():
    assert quality_check(Doc(GOOD), CFG) == (True, "")


def test_normalise_nfc_whitespace_controls():
    raw = "Cafe\u0301\r\nline\u00a0two\x07  \n\n\n\nend\u200b\ufeff"
    assert normalise_text(raw, CFG) == "Café\nline two\n\nend"
    assert normalise_text("a\tb\n  indented", CFG) == "a\tb\n  indented"  # code indentation survives
    assert normalise_text(" \x00\x1b \n", CFG) == ""


def test_boilerplate_lines_removed_document_kept():
    text = "Real content here.\nThis site uses cookies to improve your experience.\nPlease enable JavaScript to view.\nMore text."
    cleaned, dropped = clean_lines(text, CFG)
    assert cleaned == "Real content here.\nMore text."
    assert dropped == {"uses cookies": 1, "enable javascript": 1}
    about_js = "JavaScript is a programming language used on the web."
    assert clean_lines(about_js, CFG) == (about_js, {})


@pytest.mark.parametrize("check,bad,reason", [
    (F.word_count, "Too short.", "fewer than 5 words"),
    (F.mean_word_length, "a b c d e f g h i j k l m.", "mean word length below"),
    (F.mean_word_length, "Pneumonoultramicroscopic supercalifragilistic antidisestablishmentarianism "
                         "floccinaucinihilipilification hippopotomonstrosesquippedaliophobia.", "mean word length above"),
    (F.symbol_ratio, "Buy now ### best deals ### cheap prices ### click here ### today ###", "symbol-to-word"),
    (F.alpha_words, "12 34 56 78 90 11 22 33 44 words", "alphabetic"),
    (F.bullet_and_ellipsis_lines, "- one item\n- two item\n- three item\n- four", "bullets"),
    (F.bullet_and_ellipsis_lines, "and then...\nwe went...\nthey said...\nDone.", "ellipsis"),
    (F.punctuated_lines, "\n".join(f"menu item {i}" for i in range(20)), "punctuation"),
    (F.duplicate_lines, "Same line here.\nSame line here.\nSame line here.\nOther line.", "duplicate lines"),
    (F.duplicate_lines, "A para.\n\nB para.\n\nThis long paragraph repeats itself entirely.\n\n"
                        "This long paragraph repeats itself entirely.", "duplicate-line characters"),
    (F.repeated_ngrams, "buy cheap shoes " * 10 + "today.", "top 2-gram"),
    (F.repeated_ngrams, GOOD + " " + " ".join(GOOD.split()[:30]), "duplicate"),
    (F.c4_markers, "Lorem ipsum dolor sit amet, consectetur adipiscing elit.", "lorem ipsum"),
    (F.c4_markers, "function f() { return 1; } is some code here.", "'{'"),
])
def test_each_filter_removes_its_case_and_keeps_good_text(check, bad, reason):
    keep, why = check(Doc(bad), CFG)
    assert not keep and reason in why, why
    assert check(Doc(GOOD), CFG) == (True, "")


def test_duplicate_paragraphs_counted_on_their_own():
    text = "A para.\n\nB para.\n\nThis long paragraph\nrepeats itself.\n\nThis long paragraph\nrepeats itself."
    cfg = FilterConfig(max_dup_lines=None, max_dup_line_chars=None)
    keep, why = F.duplicate_lines(Doc(text), cfg)
    assert not keep and "duplicate-paragraph characters" in why


def test_bounds_can_be_turned_off():
    cfg = FilterConfig(min_words=0, drop_curly_brace=False)
    assert F.word_count(Doc("Hi."), cfg)[0]
    assert F.c4_markers(Doc("a { b"), cfg)[0]
    assert quality_check(Doc("x"), FilterConfig(enabled=False)) == (True, "")


@pytest.mark.parametrize("text,expected,counts", [
    ("Write to jane.doe+news@mail.example.co.uk today.", "Write to [EMAIL] today.", {"email": 1}),
    ("Call +1 (555) 123-4567 or 555-123-4567.", "Call [PHONE] or [PHONE].", {"phone": 2}),
    ("London: +44 20 7946 0958; office (555) 123-4567", "London: [PHONE]; office [PHONE]", {"phone": 2}),
    ("Paris +33 1 23 45 67 89 and 555.123.4567", "Paris [PHONE] and [PHONE]", {"phone": 2}),
    ("Host 192.168.1.20 and 8.8.8.8.", "Host [IP] and [IP].", {"ip": 2}),
    ("v6 2001:db8:85a3::8a2e:370:7334 and fe80::1ff:fe23:4567:890a",
     "v6 [IP] and [IP]", {"ip": 2}),
])
def test_pii_scrubbed(text, expected, counts):
    assert scrub(text, PIIConfig()) == (expected, counts)


@pytest.mark.parametrize("text", [
    "On 2024-01-15 at 12:30:45, in 1999 and 2023.",
    "Python 3.10.4 and release 1.2.3.4.5; 256.1.1.1 is not an address.",
    "Order id 123456789012, ISBN 978-3-16-148410-0, price $1,234.56, call 911.",
    "std::vector<int> and a::b in C++; ratio 16:9; score 3-2.",
    "No at sign here, but user at example dot com.",
])
def test_pii_leaves_lookalikes_alone(text):
    assert scrub(text, PIIConfig()) == (text, {})


def test_pii_kinds_can_be_disabled():
    cfg = PIIConfig(email=None, ip="<ip>")
    assert scrub("a@b.com 10.0.0.1", cfg)[0] == "a@b.com <ip>"
