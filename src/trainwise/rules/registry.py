"""The single table of every rule trainwise knows, with its documentation.

Every rule, whatever its family, is registered one way: the @rule decorator on the code that
judges it, with its documentation beside that code. What `check` is depends on the category:

- "model" / "data" (static): a function `check(ctx: StaticContext) -> Iterable[Hit]`;
- "protocol": a function `check(measurement) -> Iterable[Hit]` over one stage's typed result
  (a frozen dataclass of trainwise/measurements.py), named by `reads=`; `judge(measurement)`
  applies every rule that reads its type, in registration order;
- "in-flight": a Detector class (rules/inflight.py); the watch makes one instance per watch.

A static or protocol rule may also be judged in flight: `also_in_flight(slug)` decorates a
Detector class that reports under that rule's slug (frozen-parameters is checked before training
and again while it runs, whatever the parameters' requires_grad when the watch started).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
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
    check: Any = None  # the judge (see the module docstring); None only while being moved
    reads: type | None = None  # protocol rules: the measurement type `check` judges
    in_flight: Any = None  # a Detector class judging a static/protocol rule while training runs

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
    if rule.category == "protocol" and rule.reads is None:
        raise ValueError(f"protocol rule {rule.slug!r} must declare the measurement it `reads`")
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
    reads: type | None = None,
) -> Callable[[Callable[[Any], Iterable[Hit]]], Rule]:
    """Decorator registering a rule's judge (a check function or a Detector class, see the module
    docstring) together with its documentation. Returns the Rule; its judge is `Rule.check`.
    A protocol rule names the measurement type it judges in `reads`."""

    def wrap(check: Any) -> Rule:
        return register(
            Rule(
                slug,
                severity,
                category,
                summary,
                why,
                fix,
                example,
                source,
                check=check,
                reads=reads,
            )
        )

    return wrap


def also_in_flight(slug: str) -> Callable[[type], type]:
    """Decorator on a Detector class: the watch also judges rule `slug` (registered before, in
    another category) while training runs; its findings carry that slug and documentation."""

    def wrap(detector: type) -> type:
        rule = get(slug)
        if rule.category == "in-flight" or rule.in_flight is not None:
            raise ValueError(f"rule {slug!r} is already judged in flight")
        CATALOGUE[slug] = replace(rule, in_flight=detector)
        return detector

    return wrap


def in_flight_rules() -> list[Rule]:
    """Every rule the watch judges, in registration order: the in-flight ones and those of
    other categories with an `in_flight` detector."""
    return [r for r in CATALOGUE.values() if r.category == "in-flight" or r.in_flight is not None]


def get(slug: str) -> Rule:
    try:
        return CATALOGUE[slug]
    except KeyError:
        raise KeyError(f"no rule named {slug!r}; `trainwise rules` lists them") from None


STATIC_CATEGORIES = ("model", "data")


def static_rules() -> list[Rule]:
    return [r for r in CATALOGUE.values() if r.category in STATIC_CATEGORIES and r.check]


def rules_of(category: Category) -> list[Rule]:
    """The registered rules of one category, in registration order."""
    return [r for r in CATALOGUE.values() if r.category == category]


def judge(measurement: Any) -> list[Finding]:
    """The findings of every rule that reads this measurement's type, in registration order."""
    return [
        r.from_hit(hit)
        for r in CATALOGUE.values()
        if r.reads is type(measurement)
        for hit in r.check(measurement)
    ]
