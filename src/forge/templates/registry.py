"""The immutable set of templates a service may launch, loaded once at start.

A template is looked up only by a name from the allowlist of loaded names, never by
turning a caller's string into a path; the registry never touches the filesystem after load.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType

from forge.config.trusted_tree import chosen_content
from forge.content import TEMPLATES, content_path
from forge.templates.dsl_limits import NAME_RE
from forge.templates.problems import Problem, TemplateError, UnknownTemplate
from forge.templates.validate import LoadedTemplate, load_template_file

# A lab's test plan (`forge lab test`) lives next to its template; it is not a template.
LAB_TEST_SUFFIX = ".lab-test.yaml"


def default_template_dir() -> Path:
    """`FORGE_TEMPLATE_DIR`, else the lab templates shipped in the package."""
    env = os.environ.get("FORGE_TEMPLATE_DIR")
    return Path(env) if env else content_path(TEMPLATES)


class TemplateRegistry:
    """Validated templates by name; built with `TemplateRegistry.load(directory)`."""

    def __init__(self, templates: Mapping[str, LoadedTemplate]) -> None:
        self._by_name: Mapping[str, LoadedTemplate] = MappingProxyType(dict(templates))

    @classmethod
    def load(cls, directory: Path | None = None) -> TemplateRegistry:
        """Load every `*.yaml` in `directory` once; raise TemplateError on any bad file.

        Each file must be named `<metadata.name>.yaml`, so names are unique by construction.
        """
        root = directory if directory is not None else default_template_dir()
        registry, invalid = cls.load_each(root)
        if invalid:
            raise TemplateError([p for found in invalid.values() for p in found], str(root))
        return registry

    @classmethod
    def load_each(cls, root: Path) -> tuple[TemplateRegistry, dict[str, list[Problem]]]:
        """The valid templates of `root`, and each invalid file's problems by its stem (a
        lab author's directory of drafts, where one draft's typo must not hide the others);
        TemplateError only when `root` is not a directory, or when another local user owns
        or may write it, a file in it or a folder above (`chosen_content`)."""
        if not root.is_dir():
            raise TemplateError([Problem("", "template directory not found")], str(root))
        chosen = chosen_content(root)  # its check scripts would run as the grader
        if chosen is not None:
            raise TemplateError([Problem("", chosen)], str(root))
        found: dict[str, LoadedTemplate] = {}
        invalid: dict[str, list[Problem]] = {}
        for path in sorted(root.glob("*.yaml")):
            if not path.is_file() or path.name.endswith(LAB_TEST_SUFFIX):
                continue
            try:
                loaded = load_template_file(path)
            except TemplateError as exc:
                invalid[path.stem] = [Problem(f"{path.name}: {p.path}".rstrip(": "), p.message)
                                      for p in exc.problems]
                continue
            if path.stem != loaded.name:
                invalid[path.stem] = [
                    Problem(f"{path.name}: metadata.name",
                            f'"{loaded.name}" must equal the file name "{path.stem}"')
                ]
                continue
            found[loaded.name] = loaded
        return cls(found), invalid

    def names(self) -> tuple[str, ...]:
        """Loaded template names, sorted."""
        return tuple(sorted(self._by_name))

    def get(self, name: str) -> LoadedTemplate:
        """The template called `name`; UnknownTemplate for anything not loaded."""
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise UnknownTemplate("invalid template name")
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownTemplate(f'unknown template "{name}"') from None

    def learner_hosts(self, name: str) -> tuple[str, ...]:
        """The hosts template `name` opens to its learner; none for a template no longer
        loaded (fail closed: no terminal, no addresses)."""
        return self._by_name[name].template.learner_hosts if name in self else ()

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(NAME_RE.fullmatch(name)) and name in self._by_name

    def __iter__(self) -> Iterator[LoadedTemplate]:
        return iter(self._by_name[n] for n in self.names())

    def __len__(self) -> int:
        return len(self._by_name)
