"""PII scrubbing: e-mail addresses, phone numbers and IP addresses replaced by placeholders.

    from workbench.data.pii import PIIConfig, scrub
    text, counts = scrub("mail bob@example.com or call +1 (555) 123-4567", PIIConfig())
    # -> "mail [EMAIL] or call [PHONE]", Counter({"email": 1, "phone": 1})

Regular expressions, tuned to leave alone what merely looks numeric: dates (2024-01-15), years,
times (12:30:45), version numbers (3.10.4), prices, long numeric ids. Phone numbers are matched in
two shapes only: international (`+` country code, then 8-15 digits in groups) and North American
(`(555) 123-4567`, `555-123-4567`, `555.123.4567`, one separator used throughout). IPv4 needs four
valid octets; IPv6 candidates are confirmed by `ipaddress`. Placeholders are configurable.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from dataclasses import dataclass


@dataclass
class PIIConfig:
    enabled: bool = True
    email: str | None = "[EMAIL]"  # None (null in YAML) leaves that kind alone
    phone: str | None = "[PHONE]"
    ip: str | None = "[IP]"


EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}\b")
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
IPV4 = re.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?![\w]|\.\d)")
IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{0,4}|"
                  rf"{_OCTET}(?:\.{_OCTET}){{3}})(?![\w:])")
PHONE_INTL = re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(\d{1,4}\))?(?:[ .-]\d{1,5}){2,6}(?![\w-]|\.\d)")
PHONE_NANP = re.compile(r"(?<![\w.+-])(?:\(\d{3}\) ?\d{3}[ .-]\d{4}|\d{3}([.-])\d{3}\1\d{4})(?![\w-]|\.\d)")


def _digits(s: str) -> int:
    return sum(c.isdigit() for c in s)


def scrub(text: str, cfg: PIIConfig) -> tuple[str, Counter]:
    """Replace each kind of PII with its placeholder; count replacements by kind."""
    counts: Counter = Counter()
    if not cfg.enabled:
        return text, counts

    def sub(pattern: re.Pattern, kind: str, placeholder: str, valid=lambda s: True):
        nonlocal text

        def repl(m: re.Match) -> str:
            if not valid(m.group(0)):
                return m.group(0)
            counts[kind] += 1
            return placeholder
        text = pattern.sub(repl, text)

    if cfg.email and "@" in text:
        sub(EMAIL, "email", cfg.email)
    if cfg.ip:
        if "." in text:
            sub(IPV4, "ip", cfg.ip)
        if "::" in text or text.count(":") >= 7:
            sub(IPV6, "ip", cfg.ip, _is_ipv6)
    if cfg.phone:
        if "+" in text:
            sub(PHONE_INTL, "phone", cfg.phone, lambda s: 8 <= _digits(s) <= 15)
        sub(PHONE_NANP, "phone", cfg.phone)
    return text, counts


def _is_ipv6(s: str) -> bool:
    if _digits(s) + sum(c in "abcdefABCDEF" for c in s) < 4:  # "a::b", "::1": code, not an address
        return False
    try:
        return ipaddress.ip_address(s).version == 6
    except ValueError:
        return False
