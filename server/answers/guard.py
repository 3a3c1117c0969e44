"""Output guard: contact details the model did not read in the fiches never reach the advisor.

Every URL, e-mail address and French phone number in a drafted answer must appear in the retrieved
fiches. An unknown URL is replaced by the link of the same site among the fiches' practical links when
there is one, otherwise removed; unknown e-mails and phone numbers are removed. Counts are returned.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["GuardResult", "guard_answer"]

_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>()\[\]\"']+", re.IGNORECASE)
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
# 01 23 45 67 89, 01.23.45.67.89, 0123456789, +33 1 23 45 67 89. Four-digit service numbers (3939, 3646)
# are left alone: they cannot be told apart from amounts and years.
_PHONE = re.compile(r"(?<![\w+])(?:\+33\s?|0)[1-9](?:[\s.-]?\d{2}){4}(?!\d)")
_TRAILING = ".,;:!?"


@dataclass(frozen=True, slots=True)
class GuardResult:
    text: str
    urls_removed: int
    emails_removed: int
    phones_removed: int


def _digits(value: str) -> str:
    digits = re.sub(r"\D", "", value)
    return "0" + digits[2:] if digits.startswith("33") and len(digits) == 11 else digits


def _host(url: str) -> str:
    host = urlsplit(url if "://" in url else f"https://{url}").hostname or ""
    return host.removeprefix("www.")


def guard_answer(text: str, allowed_text: str, links: Iterable[str] = ()) -> GuardResult:
    """``allowed_text``: everything the fiches say (body, links); ``links``: their practical-link URLs."""
    link_list = list(links)
    known_urls = {u.rstrip(_TRAILING).lower() for u in _URL.findall(allowed_text)} | {u.lower() for u in link_list}
    by_host: dict[str, str] = {}
    for url in link_list:
        by_host.setdefault(_host(url), url)
    known_emails = {e.lower() for e in _EMAIL.findall(allowed_text)}
    known_phones = {_digits(p) for p in _PHONE.findall(allowed_text)}
    counts = {"url": 0, "email": 0, "phone": 0}

    def guard_url(match: re.Match[str]) -> str:
        raw = match.group(0)
        core = raw.rstrip(_TRAILING)
        tail = raw[len(core) :]
        if core.lower() in known_urls:
            return raw
        counts["url"] += 1
        replacement = by_host.get(_host(core))
        return (replacement + tail) if replacement else tail

    def email(match: re.Match[str]) -> str:
        if match.group(0).lower() in known_emails:
            return match.group(0)
        counts["email"] += 1
        return ""

    def phone(match: re.Match[str]) -> str:
        if _digits(match.group(0)) in known_phones:
            return match.group(0)
        counts["phone"] += 1
        return ""

    guarded = _URL.sub(guard_url, text)
    guarded = _EMAIL.sub(email, guarded)
    guarded = _PHONE.sub(phone, guarded)
    guarded = re.sub(r"[ \t]{2,}", " ", guarded)
    return GuardResult(guarded, counts["url"], counts["email"], counts["phone"])
