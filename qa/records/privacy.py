"""What keeps the records pseudonymous: secrets redacted from text, askers hashed with a salt."""

from __future__ import annotations

import hashlib
import hmac
import re

REDACTED = "[REDACTED]"
EMAIL = "[EMAIL]"
MENTION = "@someone"

_KEYWORDS = (r"pass(?:word|wd|phrase)?|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|secret[_-]?key|"
             r"private[_-]?key|client[_-]?secret|credentials?|auth")

_DONE = r"\[|(?:bearer|basic|token|digest|negotiate)\s+\["  # already redacted by an earlier rule

# Order matters: whole blocks and structured forms first, then the shapes of known tokens, then
# "key: value" pairs, then e-mail addresses and Slack mentions.
_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    # PEM private keys, whole
    (re.compile(r"-----BEGIN[A-Z ]*PRIVATE KEY-----.*?(?:-----END[A-Z ]*PRIVATE KEY-----|$)", re.S), REDACTED),
    # credentials in URLs: scheme://user:password@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@"), rf"\1{REDACTED}@"),
    # Authorization headers and bearer tokens
    (re.compile(r"(?i)\b(authorization\s*[:=]\s*)((?:bearer|basic|token|digest|negotiate)\s+)?[^\s,;\"']+"),
     rf"\1\2{REDACTED}"),
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{6,}"), rf"\1 {REDACTED}"),
    # known token shapes: Slack, GitHub, GitLab, AWS, Google, OpenAI-style, JWT, kubeadm bootstrap tokens
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{8,}|\bxapp-[A-Za-z0-9-]{8,}"), REDACTED),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}|\bgithub_pat_[A-Za-z0-9_]{20,}|\bglpat-[A-Za-z0-9_-]{20,}"), REDACTED),
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b|\bAIza[0-9A-Za-z_-]{35}\b|\bsk-[A-Za-z0-9_-]{20,}"), REDACTED),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}"), REDACTED),
    (re.compile(r"\b[a-z0-9]{6}\.[a-z0-9]{16}\b"), REDACTED),
    # key: value / key=value / --key value / "key": "value" (not a value redacted above)
    (re.compile(rf"(?i)(--?(?:[\w-]*(?:{_KEYWORDS})[\w-]*))(?:=|\s+)(?!-|\[)[^\s,;]+"), rf"\1 {REDACTED}"),
    (re.compile(rf"(?i)\b([\w.-]*(?:{_KEYWORDS})[\w.-]*[\"']?\s*[:=]\s*)(?!{_DONE})([\"']?)[^\s\"',;}}]+\2"),
     rf"\1\2{REDACTED}\2"),
    # e-mail addresses
    (re.compile(r"(?i)(?:mailto:)?[\w.%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}\b"), EMAIL),
    # Slack mentions as a slash command escapes them: <@U024BE7LH|bob>, <@W…>
    (re.compile(r"<@[UW][A-Z0-9]+(?:\|[^>]*)?>"), MENTION),
)


def redact(text: str) -> str:
    """The text with tokens, passwords, bearer and API keys, credentials in URLs, private keys,
    e-mail addresses and Slack mentions replaced by placeholders."""
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text


def pseudonym(identity: str, salt: str) -> str:
    """A stable pseudonym: HMAC-SHA256 of the identity (``slack:TEAM:USER`` or ``ip:ADDRESS``)
    under the salt, 32 hex digits. The identity itself is never stored."""
    return hmac.new(salt.encode("utf-8"), identity.encode("utf-8"), hashlib.sha256).hexdigest()[:32]
