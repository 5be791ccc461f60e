"""Where the bundled data is: the rules files and the fixture tree.

In a checkout (and an editable install) they are the repository's `rules/`
and `fixtures/minilinux/`; a release install (`pip install .`) carries copies
inside the package, under `_data/` (pyproject.toml maps them there)."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_CHECKOUT = {"rules": _PACKAGE.parent / "rules", "minilinux": _PACKAGE.parent / "fixtures" / "minilinux"}


def bundled(name: str) -> Path:
    """The directory of bundled data `name` ("rules" or "minilinux")."""
    packaged = _PACKAGE / "_data" / name
    return packaged if packaged.is_dir() else _CHECKOUT[name]


def default_rules() -> Path:
    return bundled("rules") / "mapping.toml"


def fixture_tree() -> Path:
    return bundled("minilinux")
