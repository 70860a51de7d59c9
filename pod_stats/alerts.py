"""Threshold alerts on any figure of the JSON document, for nodes without Prometheus.

`--alert 'rss_bytes>512Mi'`, `--alert 'open_errors_per_second>100'`: each rule is
checked against every pod's figures and every container's.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

from pod_stats.figures import JSON_FIGURES
from pod_stats.model import Figures, Snapshot
from pod_stats.text import inert, put_text

_OPERATORS = {
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}
_UNITS = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
_RULE = re.compile(r"^\s*([a-z_]+)\s*(>=|<=|==|!=|>|<)\s*([0-9]+(?:\.[0-9]+)?)\s*(Ki|Mi|Gi|Ti|K|M|G|T)?\s*$")
FIELDS = JSON_FIGURES


@dataclass(frozen=True)
class AlertRule:
    text: str
    field: str
    operator: str
    threshold: float

    def fires(self, figures: Figures) -> Optional[float]:
        """The value that breaks the threshold, or None."""
        value = figures.get(self.field)
        if value is not None and _OPERATORS[self.operator](value, self.threshold):
            return value
        return None


@dataclass(frozen=True)
class Alert:
    rule: AlertRule
    namespace: Optional[str]
    pod: Optional[str]
    pod_uid: str
    container: Optional[str]  # None: the pod's own figures
    container_id: Optional[str]
    value: float

    def line(self) -> str:
        """One line for a terminal: names inert (text.inert)."""
        where = f"{inert(self.namespace) or '?'}/{inert(self.pod or self.pod_uid)}"
        if self.container_id is not None:
            where += f" container {inert(self.container) or inert(self.container_id)[:12]}"
        return f"ALERT {inert(self.rule.text)}: {where}: {self.rule.field}={self.value:g}"

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "alert": self.rule.text,
            "field": self.rule.field,
            "value": self.value,
            "threshold": self.rule.threshold,
        }
        put_text(document, "namespace", self.namespace)
        put_text(document, "pod", self.pod)
        document["uid"] = self.pod_uid
        put_text(document, "container", self.container)
        document["container_id"] = self.container_id
        return document


def parse_rule(text: str) -> AlertRule:
    """`FIELD OP NUMBER[UNIT]`; raises ValueError with a sentence a user can act on."""
    match = _RULE.match(text)
    if not match:
        raise ValueError(f"alert {text!r} is not FIELD OP NUMBER[UNIT] (e.g. 'rss_bytes>512Mi')")
    field, operator, number, unit = match.groups()
    if field not in FIELDS:
        raise ValueError(f"alert {text!r}: unknown field {field!r} (one of: {', '.join(FIELDS)})")
    return AlertRule(text.strip(), field, operator, float(number) * _UNITS[unit or ""])


def evaluate(rules: Sequence[AlertRule], snapshot: Snapshot) -> list[Alert]:
    alerts = []
    for pod in snapshot.pods:
        for rule in rules:
            value = rule.fires(pod.figures)
            if value is not None:
                alerts.append(Alert(rule, pod.namespace, pod.name, pod.uid, None, None, value))
            for container in pod.containers:
                value = rule.fires(container.figures)
                if value is not None:
                    alerts.append(Alert(rule, pod.namespace, pod.name, pod.uid, container.name, container.id, value))
    return alerts
