"""The lab template as it goes into a signed evidence bundle: hints without their text.

A learner may download the bundle of an earlier attempt; the template in it must not hand
them every hint for free. Each hint's text is replaced by ``sha256:<hex of its UTF-8 text>``
(criterion, cost and order stay, so aids.json can still be judged against it, and an
operator holding the template can confirm each hint). A template without hint text is
bundled byte for byte as before. score.json then names both hashes: ``template.sha256``
the template as authored (the registry's), ``template.bundled_sha256`` the bundled bytes.
"""

from __future__ import annotations

import hashlib
from typing import Any

import yaml

HINT_TEXT_PREFIX = "sha256:"


def hint_digest(text: str) -> str:
    """What replaces a hint's text in the bundle."""
    return HINT_TEXT_PREFIX + hashlib.sha256(text.encode("utf-8")).hexdigest()


def _hints(doc: Any) -> list[Any]:
    spec = doc.get("spec") if isinstance(doc, dict) else None
    hints = spec.get("hints") if isinstance(spec, dict) else None
    return hints if isinstance(hints, list) else []


def bundled_template(template_yaml: bytes) -> bytes:
    """``template_yaml`` with every hint's text replaced by its digest (unchanged bytes when
    it has no hint text). The bytes were validated by the template registry; ValueError
    when they are not a YAML document after all."""
    try:
        doc = yaml.safe_load(template_yaml.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"template: not UTF-8 YAML ({exc})") from None
    redacted = False
    for hint in _hints(doc):
        if isinstance(hint, dict) and isinstance(hint.get("text"), str):
            hint["text"] = hint_digest(hint["text"])
            redacted = True
    if not redacted:
        return template_yaml
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True).encode("utf-8")
