"""The single table of every rule trainwise knows, with its documentation.

A rule is registered once, here or with the @rule decorator next to its check. Static rules carry
a `check(ctx)` that yields Hits; protocol and in-flight rules are judged by stages and the watch,
which build their Findings through `CATALOGUE[slug].finding(...)`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from trainwise.findings import SEVERITIES, Finding, Severity

Category = Literal["model", "data", "protocol", "in-flight"]
CATEGORIES: tuple[Category, ...] = ("model", "data", "protocol", "in-flight")


@dataclass(frozen=True)
class Hit:
    """What a check found, before the registry stamps it with the rule's slug and severity."""

    message: str
    where: str | int | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)
    fix: str = ""
    severity: Severity | None = None  # overrides the rule's default (e.g. a harmless variant)


@dataclass(frozen=True)
class Rule:
    slug: str
    severity: Severity
    category: Category
    summary: str  # one line
    why: str
    fix: str
    example: str  # code showing the mistake (and, after a blank line, the repair)
    source: str  # the tip in TIPS.md / the seed, and the paper where one exists
    check: Callable[[Any], Iterable[Hit]] | None = None

    def finding(
        self,
        message: str,
        where: str | int | None = None,
        evidence: Mapping[str, Any] | None = None,
        fix: str = "",
        severity: Severity | None = None,
    ) -> Finding:
        return Finding(
            rule=self.slug,
            severity=severity or self.severity,
            message=message,
            where=where,
            evidence=evidence or {},
            fix=fix or self.fix,
        )

    def from_hit(self, hit: Hit) -> Finding:
        return self.finding(hit.message, hit.where, hit.evidence, hit.fix, hit.severity)

    def doc_sections(self) -> dict[str, str]:
        return {"Why": self.why, "Fix": self.fix, "Example": self.example, "Source": self.source}


CATALOGUE: dict[str, Rule] = {}


def register(rule: Rule) -> Rule:
    if rule.slug in CATALOGUE:
        raise ValueError(f"rule {rule.slug!r} is registered twice")
    if rule.severity not in SEVERITIES:
        raise ValueError(f"rule {rule.slug!r}: unknown severity {rule.severity!r}")
    if rule.category not in CATEGORIES:
        raise ValueError(f"rule {rule.slug!r}: unknown category {rule.category!r}")
    CATALOGUE[rule.slug] = rule
    return rule


def rule(
    slug: str,
    *,
    severity: Severity,
    category: Category,
    summary: str,
    why: str,
    fix: str,
    example: str,
    source: str,
) -> Callable[[Callable[[Any], Iterable[Hit]]], Rule]:
    """Decorator registering a static check function together with its documentation."""

    def wrap(check: Callable[[Any], Iterable[Hit]]) -> Rule:
        return register(
            Rule(slug, severity, category, summary, why, fix, example, source, check=check)
        )

    return wrap


def get(slug: str) -> Rule:
    try:
        return CATALOGUE[slug]
    except KeyError:
        raise KeyError(f"no rule named {slug!r}; `trainwise rules` lists them") from None


def static_rules() -> list[Rule]:
    return [r for r in CATALOGUE.values() if r.check is not None]
