"""The catalogue's own contract: every rule documented, every rule tested both ways."""

import ast
import re
from pathlib import Path

import pytest

from tips_slugs import CATEGORY_OF
from trainwise.rules import CATALOGUE

TESTS = Path(__file__).parent


def _marked(kind: str) -> set[str]:
    """Slugs named in @pytest.mark.<kind>("slug", ...) decorators anywhere under tests/."""
    slugs = set()
    for path in TESTS.rglob("*.py"):
        tree = ast.parse(path.read_text())
        # Module-level `SLUG = "..."` constants, so markers may name a slug through them.
        constants = {
            t.id: node.value.value
            for node in tree.body
            if isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
            for t in node.targets
            if isinstance(t, ast.Name)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == kind:
                for arg in node.args:
                    if isinstance(arg, ast.Constant):
                        slugs.add(arg.value)
                    elif isinstance(arg, ast.Name) and arg.id in constants:
                        slugs.add(constants[arg.id])
    return slugs


FIRING, SILENT = _marked("fires"), _marked("silent")


@pytest.mark.parametrize("slug", sorted(CATALOGUE))
def test_rule_is_documented(slug):
    rule = CATALOGUE[slug]
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", slug)
    assert rule.summary and "\n" not in rule.summary
    for section, text in rule.doc_sections().items():
        assert len(text.strip()) >= 20, f"{slug}: section {section} is missing or too short"


@pytest.mark.parametrize("slug", sorted(CATALOGUE))
def test_rule_slug_and_category_follow_tips(slug):
    # New rules may be added; the ones TIPS.md names must sit in its category.
    if slug in CATEGORY_OF:
        assert CATALOGUE[slug].category == CATEGORY_OF[slug]


@pytest.mark.parametrize("slug", sorted(CATALOGUE))
def test_rule_has_firing_and_silent_tests(slug):
    assert slug in FIRING, f"{slug} has no test marked @pytest.mark.fires({slug!r})"
    assert slug in SILENT, f"{slug} has no test marked @pytest.mark.silent({slug!r})"


def test_explain_sections_render_for_every_rule():
    from click.testing import CliRunner

    from trainwise.cli import main

    for slug in CATALOGUE:
        result = CliRunner().invoke(main, ["explain", slug])
        assert result.exit_code == 0, result.output
        for section in ("Why", "Fix", "Example", "Source"):
            assert section in result.output


@pytest.mark.parametrize("slug", sorted(CATALOGUE))
def test_rule_cites_sources_a_user_can_find(slug):
    # TIPS.md and the seed write-ups' numbers are this project's own notes, not the user's
    source = CATALOGUE[slug].source
    assert "TIPS.md" not in source and not re.search(r"seeds? 0\d\d", source.lower()), source


@pytest.mark.parametrize("slug", sorted(CATALOGUE))
def test_explain_labels_the_mistake_and_the_repair(slug):
    from trainwise.cli import _example

    example = CATALOGUE[slug].example
    shown = "\n".join(_example(example))
    if "\n\n" in example.strip():
        bad, good = example.split("\n\n", 1)
        assert shown.index("The mistake") < shown.index(bad) < shown.index("The repair")
        assert good.strip() in shown[shown.index("The repair") :]
    else:  # an example without a repair part is shown as it is, unlabelled
        assert "The repair" not in shown
