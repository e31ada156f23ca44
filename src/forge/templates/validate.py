"""Parse and fully validate a template (YAML bytes → model), collecting every problem."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from forge.templates.dsl_models import ScenarioTemplate
from forge.templates.problems import (
    Problem,
    TemplateError,
    UnreadableTemplate,
    problems_from_validation,
)
from forge.templates.semantic import check_semantics
from forge_verify.files import InputRefused, read_bounded

MAX_TEMPLATE_BYTES = 1024 * 1024
MAX_NESTING = 64  # far deeper than any template; bounds the YAML composer's recursion


@dataclass(frozen=True)
class LoadedTemplate:
    """A validated template with the sha256 of the exact bytes it was loaded from."""

    template: ScenarioTemplate
    sha256: str
    source: bytes

    @property
    def name(self) -> str:
        """The template's registry name."""
        return self.template.name


def validate_document(doc: Any) -> tuple[ScenarioTemplate | None, list[Problem]]:
    """Schema then semantic checks; returns the model (if schema-valid) and every problem."""
    model, problems, _ = check_document(doc)
    return model, problems


def check_document(doc: Any) -> tuple[ScenarioTemplate | None, list[Problem], bool]:
    """`validate_document`, and whether the cross-references were checked. A schema problem
    stopped them, so an author fixed a mistyped key only to be shown an unknown subnet
    next: when every schema problem is an unknown key, they are checked on the document
    without those keys, and the author reads both at once."""
    if not isinstance(doc, Mapping):
        return None, [Problem("", "a template must be a YAML mapping at the top level")], False
    try:
        model = ScenarioTemplate.model_validate(doc)
    except ValidationError as exc:
        problems = problems_from_validation(exc)
        pruned = _without_unknown_keys(doc, exc)
        if pruned is None:
            return None, problems, False
        try:
            partial = ScenarioTemplate.model_validate(pruned)
        except ValidationError:
            return None, problems, False
        return None, problems + check_semantics(partial), True
    return model, check_semantics(model), True


def _without_unknown_keys(doc: Mapping[str, Any], exc: ValidationError) -> Any | None:
    """A copy of `doc` without the keys the schema does not know, or None when another
    schema problem is among `exc`'s (no guess is made at what a wrong value should be)."""
    pruned = copy.deepcopy(dict(doc))
    for error in exc.errors(include_url=False):
        if error["type"] == "too_short":
            continue  # a list whose item failed: that item's own error says what
        if error["type"] != "extra_forbidden":
            return None
        *parents, key = error["loc"]
        node: Any = pruned
        for part in parents:
            node = _child(node, part)
        if not isinstance(node, dict) or key not in node:
            return None
        del node[key]
    return pruned


def _child(node: Any, part: int | str) -> Any:
    """`node[part]`, or `node` itself for a part of an error's path that is not in the
    document (a validator's name)."""
    if isinstance(node, list):
        return node[part] if isinstance(part, int) and part < len(node) else node
    return node[part] if isinstance(node, Mapping) and part in node else node


class _TooDeep(yaml.YAMLError):
    """Collections nested deeper than MAX_NESTING."""


# libyaml's parser when PyYAML has it (about ten times faster: every service start parses
# every template), the pure-Python one otherwise; both give the same documents.
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_OPENS = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_CLOSES = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


class _StrictLoader(_SafeLoader):  # type: ignore[valid-type,misc]
    """A safe loader that refuses duplicate keys (a silent override hides mistakes)."""


def _check_nesting(text: str) -> None:
    """Refuse collections nested deeper than MAX_NESTING before anything is composed: the
    composer recurses once per level, so 100,000 `[` must not reach it. The parser's
    events come from an explicit stack, not recursion, and stop at the first level too
    many. libyaml's scanner, which looks ahead, has its own limit (1,000 levels), past
    ours: reaching it is the same refusal."""
    too_deep = _TooDeep(f"collections nested deeper than {MAX_NESTING} levels")
    depth = 0
    try:
        for event in yaml.parse(text, Loader=_SafeLoader):
            if isinstance(event, _OPENS):
                depth += 1
                if depth > MAX_NESTING:
                    raise too_deep
            elif isinstance(event, _CLOSES):
                depth -= 1
    except yaml.MarkedYAMLError as exc:
        if exc.problem == "exceeded maximum nesting depth":
            raise too_deep from None
        raise


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    mapping: dict[Any, Any] = loader.construct_mapping(node)
    return mapping


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_template(data: bytes, source: str = "<bytes>") -> LoadedTemplate:
    """Validate template bytes (YAML or JSON); raise TemplateError listing every problem."""
    if len(data) > MAX_TEMPLATE_BYTES:
        raise UnreadableTemplate([Problem("", f"larger than {MAX_TEMPLATE_BYTES} bytes")],
                                 source)
    try:
        text = data.decode("utf-8")
        _check_nesting(text)
        doc = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (safe loader)
    except (_TooDeep, RecursionError) as exc:
        detail = str(exc) if isinstance(exc, _TooDeep) else "nested too deeply"
        raise UnreadableTemplate([Problem("", f"not parsed: {detail}")], source) from None
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise TemplateError([Problem("", f"not valid UTF-8 YAML: {exc}")], source) from exc
    model, problems, cross_checked = check_document(doc)
    if problems or model is None:
        raise TemplateError(problems, source, cross_checked=cross_checked)
    return LoadedTemplate(model, hashlib.sha256(data).hexdigest(), data)


def load_template_file(path: Path) -> LoadedTemplate:
    """Read (bounded: a regular file of at most MAX_TEMPLATE_BYTES) and validate a template;
    UnreadableTemplate when the file cannot be read or parsed safely at all."""
    try:
        data = read_bounded(path, MAX_TEMPLATE_BYTES, what="template")
    except InputRefused as exc:
        raise UnreadableTemplate([Problem("", f"cannot read file: {exc.reason}")],
                                 str(path)) from None
    return parse_template(data, str(path))
