"""The README and the documentation site keep their promises: a README read in two minutes with its two commands
near the top, CI running exactly the README's test command, pages that repeat a command repeating it exactly, and
every page of docs/ reachable from the site's nav and from the README. (Building the site, `mkdocs build --strict`,
is a CI step of its own, not a test here.)"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
CI_RUN = ROOT / ".ci" / "run"
MAX_README_BYTES = 12_000
COMMANDS_WITHIN_LINES = 60


def _code_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every line inside a fenced code block of a markdown text."""
    out, inside = [], False
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("```"):
            inside = not inside
        elif inside:
            out.append((number, line))
    return out


def _install_commands() -> list[tuple[int, str]]:
    """The README's one-line commands that make the virtual environment and install the project."""
    return [(n, line) for n, line in _code_lines(README.read_text(encoding="utf-8"))
            if line.startswith("python3 -m venv ") and " pip install " in line]


def _ci_test_command() -> str:
    """The one command `.ci/run` runs after `set -euo pipefail` and the install lines of the system packages the tests
    need (the browser, Slurm; exports aside)."""
    lines = [line.strip() for line in CI_RUN.read_text(encoding="utf-8").splitlines()]
    assert "set -euo pipefail" in lines, f"{CI_RUN}: no 'set -euo pipefail' line"
    after_set = lines[lines.index("set -euo pipefail") + 1:]
    browser = [i for i, line in enumerate(after_set) if "apt-get install" in line and "chromium" in line]
    assert browser, f"{CI_RUN}: no line installing chromium after 'set -euo pipefail'"
    commands = [line for line in after_set[browser[0] + 1:] if line and not line.startswith("#")
                and not line.startswith("export ") and "apt-get install" not in line]
    assert len(commands) == 1, f"{CI_RUN}: expected one test command after the browser's install, got {commands}"
    return commands[0]


def test_readme_is_short() -> None:
    size = len(README.read_bytes())
    assert size < MAX_README_BYTES, f"README.md is {size} bytes; move long sections into docs/"


def test_readme_two_commands_near_the_top() -> None:
    commands = _install_commands()
    assert len(commands) == 2, f"README.md: expected the two install-and-run commands, got {commands}"
    late = [(n, c) for n, c in commands if n > COMMANDS_WITHIN_LINES]
    assert not late, f"README.md: commands past line {COMMANDS_WITHIN_LINES}: {late}"
    (_, main_job), (_, tests) = commands
    assert main_job.endswith("&& harness run suites/smoke.yaml"), main_job
    assert (ROOT / "suites" / "smoke.yaml").is_file()
    assert "python -m pytest" in tests, tests


def test_readme_commands_install_extras_that_exist() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11 and later
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
                 ["project"]["optional-dependencies"])
    for _, command in _install_commands():
        for word in shlex.split(command):
            match = re.fullmatch(r"\.\[([a-z0-9_,-]+)\]", word)
            if match:
                missing = set(match.group(1).split(",")) - extras
                assert not missing, f"README.md: `{command}` installs extras pyproject.toml lacks: {missing}"


def test_ci_runs_exactly_the_readme_test_command() -> None:
    (_, _), (_, tests) = _install_commands()
    assert _ci_test_command() == tests


def test_docs_repeat_the_readme_commands_exactly() -> None:
    """A page that shows an install command (the home page mirrors the README) shows one of the README's two."""
    readme = {c for _, c in _install_commands()}
    for page in DOCS.rglob("*.md"):
        for n, line in _code_lines(page.read_text(encoding="utf-8")):
            if line.startswith("python3 -m venv "):
                assert line in readme, f"{page.relative_to(ROOT)}:{n}: not one of the README's commands: {line}"


def _nav_pages(nav: object) -> list[str]:
    """Every page a mkdocs nav names, at any depth (entries are 'page.md', {'Title': 'page.md'} or sections)."""
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [page for item in nav for page in _nav_pages(item)]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in _nav_pages(value)]
    raise AssertionError(f"mkdocs.yml: unexpected nav entry {nav!r}")


def test_every_docs_page_is_in_the_nav() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    assert config["docs_dir"] == "docs"
    nav = _nav_pages(config["nav"])
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert pages - set(nav) == set(), "pages missing from mkdocs.yml's nav"
    assert set(nav) - pages == set(), "mkdocs.yml's nav names pages that do not exist"
    assert len(nav) == len(set(nav)), "a page is in the nav twice"
    assert nav[0] == "index.md"


def test_readme_links_every_docs_page() -> None:
    text = README.read_text(encoding="utf-8")
    linked = set(re.findall(r"\]\(docs/([^)#\s]+)\)", text))
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert linked - pages == set(), "README.md links to docs pages that do not exist"
    assert pages - linked - {"index.md"} == set(), "docs pages the README's table does not point to"
