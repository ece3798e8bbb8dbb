"""Hypothesis strategies for fuzzed Rollouts and AnalysisTemplates, valid-looking and hostile.

A case is a valid base Rollout with a few edits drawn from `EDITS`. Each edit says what the
operator must make of it, in each mode: "fresh" (the Rollout is created with it: the first
revision becomes stable directly and runs no analysis) and "update" (a Healthy Rollout gets
it with a new image: a canary, whose analyses must resolve first). A verdict is "valid"
(must be accepted), "invalid" (must be refused: by the API server, or InvalidSpec naming one
of the edit's fields) or "either" (hostile but legal: no crash, no loop, and if refused,
explained). Hostile values: huge and negative numbers, empty and 1 MB strings, unicode,
deeply nested objects, duplicate step kinds, regexes RE2 cannot run (and ones it runs in
linear time that would explode a backtracking engine), PromQL injection in arguments,
references to templates, Secrets and router objects that do not exist.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from hypothesis import strategies as st

Body = dict[str, Any]
Verdict = Literal["valid", "invalid", "either"]
Mode = Literal["fresh", "update"]
NOWHERE = "http://127.0.0.1:9"  # a Prometheus that never answers (discard port)
MB = 1024 * 1024

# ---------------------------------------------------------------- the case


@dataclass
class Case:
    mode: Mode
    spec: Body  # the Rollout's spec (the test sets the name)
    templates: list[Body] = field(default_factory=list)  # AnalysisTemplates to create first
    annotations: dict[str, str] = field(default_factory=dict)  # the Rollout's
    verdict: Verdict = "valid"
    fields: list[str] = field(default_factory=list)  # an InvalidSpec must name one of these
    edits: list[str] = field(default_factory=list)  # names, for the report

    def __repr__(self) -> str:  # hypothesis prints it: keep 1 MB strings out of the log
        text = repr({"mode": self.mode, "edits": self.edits, "verdict": self.verdict})
        return f"Case({text}, spec={_short(self.spec)}, templates={_short(self.templates)})"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 3000 else f"{text[:3000]}... ({len(text)} characters)"


def base_spec(app: str, image: str = "nginx:1.27") -> Body:
    return {
        "replicas": 1,
        "selector": {"matchLabels": {"app": app}},
        "template": {
            "metadata": {"labels": {"app": app}},
            "spec": {
                "containers": [{"name": "web", "image": image, "ports": [{"containerPort": 8080}]}]
            },
        },
        "strategy": {"canary": {"scaleDownDelaySeconds": 0, "steps": [{"setWeight": 50}]}},
    }


def combined(verdicts: list[Verdict]) -> Verdict:
    if "invalid" in verdicts:
        return "invalid"
    return "either" if "either" in verdicts else "valid"


# An edit changes a case in place and returns (verdict in fresh mode, verdict in update mode,
# fields an InvalidSpec must name). Drawn by hypothesis as (name, strategy of an edit).
Edit = Callable[[Case], tuple[Verdict, Verdict, list[str]]]


def _canary(case: Case) -> Body:
    return case.spec["strategy"]["canary"]  # type: ignore[no-any-return]


def _container(case: Case) -> Body:
    return case.spec["template"]["spec"]["containers"][0]  # type: ignore[no-any-return]


# ---------------------------------------------------------------- hostile values

HUGE = st.sampled_from([2**31, 2**53, 10**15, 999_999_999])
NEGATIVE = st.sampled_from([-1, -(2**31), -999_999])
OUT_OF_INT64 = st.just(2**64)
UNICODE = st.text(
    st.characters(blacklist_categories=("Cs",), min_codepoint=0x80), min_size=1, max_size=40
)
# Values the API server takes in a string field; NUL and lone surrogates it refuses.
LEGAL_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=64)


def huge_string(size: int) -> st.SearchStrategy[str]:
    return st.sampled_from("xé😀").map(lambda c: c * (size // len(c.encode())))


def nested(depth: int) -> Body:
    out: Body = {"leaf": "x"}
    for i in range(depth):
        out = {f"k{i % 3}": out}
    return out


# ---------------------------------------------------------------- edits: numbers


def _number_edit(path: str, where: str) -> st.SearchStrategy[Edit]:
    """A number field out of its bounds: refused by the API server (schema) or InvalidSpec."""

    def edit(value: int) -> Edit:
        def apply(case: Case) -> tuple[Verdict, Verdict, list[str]]:
            target, key = _at(case, path)
            target[key] = value
            return "invalid", "invalid", [where]

        return apply

    return st.one_of(HUGE, NEGATIVE, OUT_OF_INT64).map(edit)


def _at(case: Case, path: str) -> tuple[Body, str]:
    parts = path.split(".")
    target: Body = case.spec
    for part in parts[:-1]:
        target = target.setdefault(part, {})
    return target, parts[-1]


def weights() -> st.SearchStrategy[Edit]:
    def edit(values: list[int]) -> Edit:
        def apply(case: Case) -> tuple[Verdict, Verdict, list[str]]:
            _canary(case)["steps"] = [{"setWeight": v} for v in values]
            if any(v < 0 or v > 100 for v in values):
                return "invalid", "invalid", ["setWeight"]
            if any(b < a for a, b in itertools.pairwise(values)):
                return "invalid", "invalid", ["setWeight"]
            return "valid", "valid", []

        return apply

    return st.lists(st.integers(-5, 105) | HUGE, min_size=1, max_size=6).map(edit)


def valid_steps() -> st.SearchStrategy[Edit]:
    """Valid-looking step lists: weights that only rise, timed and untimed pauses."""
    pause = st.one_of(
        st.just({}),
        st.integers(0, 3600).map(lambda s: {"duration": s}),
        st.sampled_from(["1s", "30s", "5m", "1h30m", "250ms", "2h"]).map(lambda s: {"duration": s}),
    )

    def edit(raw: list[tuple[str, Any]]) -> Edit:
        def apply(case: Case) -> tuple[Verdict, Verdict, list[str]]:
            steps, weight = [], 0
            for kind, value in raw:
                if kind == "setWeight":
                    weight = min(100, weight + int(value))
                    steps.append({"setWeight": weight})
                else:
                    steps.append({"pause": value})
            _canary(case)["steps"] = steps
            return "valid", "valid", []

        return apply

    step = st.one_of(
        st.tuples(st.just("setWeight"), st.integers(0, 40)), st.tuples(st.just("pause"), pause)
    )
    return st.lists(step, max_size=12).map(edit)


def durations() -> st.SearchStrategy[Edit]:
    bad = st.one_of(
        NEGATIVE,
        st.sampled_from(["-5s", "abc", "", "5 minutes", "1e9", "99999999999999h", "1h-1m", "∞"]),
        UNICODE,
    )

    def edit(value: Any) -> Edit:
        def apply(case: Case) -> tuple[Verdict, Verdict, list[str]]:
            _canary(case)["steps"] = [{"setWeight": 10}, {"pause": {"duration": value}}]
            return "invalid", "invalid", ["steps[1].pause.duration", "duration"]

        return apply

    return bad.map(edit)


def duplicate_kinds() -> st.SearchStrategy[Edit]:
    kinds = st.fixed_dictionaries(
        {},
        optional={
            "setWeight": st.integers(0, 100),
            "pause": st.just({"duration": 1}),
            "setCanaryScale": st.just({"replicas": 1}),
            "analysis": st.just({"templates": [{"templateName": "x"}]}),
        },
    ).filter(lambda d: len(d) != 1)

    def edit(step: Body) -> Edit:
        def apply(case: Case) -> tuple[Verdict, Verdict, list[str]]:
            _canary(case)["steps"] = [{"setWeight": 5}, step]
            return "invalid", "invalid", ["steps[1]"]

        return apply

    return kinds.map(edit)


def too_many_steps() -> st.SearchStrategy[Edit]:
    def edit(count: int) -> Edit:
        def apply(case: Case) -> tuple[Verdict, Verdict, list[str]]:
            _canary(case)["steps"] = [{"pause": {"duration": 1}}] * count
            return "invalid", "invalid", ["steps"]

        return apply

    return st.sampled_from([101, 500, 5000]).map(edit)


# ---------------------------------------------------------------- edits: strings


def container_strings() -> st.SearchStrategy[Edit]:
    which = st.sampled_from(["name", "image"])
    value = st.one_of(st.just(""), UNICODE, huge_string(MB))

    def edit(pair: tuple[str, str]) -> Edit:
        key, text = pair

        def apply(case: Case) -> tuple[Verdict, Verdict, list[str]]:
            _container(case)[key] = text
            fields = [f"containers[0].{key}", "spec.template"]
            if key == "image" and text and len(text) < 1000 and text.strip() == text:
                return "either", "either", fields  # an odd image name is the registry's business
            return "invalid", "invalid", fields

        return apply

    return st.tuples(which, value).map(edit)


def template_annotations() -> st.SearchStrategy[Edit]:
    """Pod-template annotations: unicode is fine, 1 MB is past what Sluice writes."""

    def edit(pair: tuple[str, bool]) -> Edit:
        text, big = pair

        def apply(case: Case) -> tuple[Verdict, Verdict, list[str]]:
            meta = case.spec["template"]["metadata"]
            if big:
                meta["annotations"] = {"note": text * (MB // len(text.encode()) + 1)}
                return "invalid", "invalid", ["spec.template"]
            meta["annotations"] = {"note": text * 20}  # at most 800 characters
            return "valid", "valid", []

        return apply

    return st.tuples(UNICODE, st.booleans()).map(edit)


def labels() -> st.SearchStrategy[Edit]:
    bad = st.one_of(
        st.just(("sluice.dev/slot", "a")),
        st.just(("app", "")),  # the selector then does not match
        st.tuples(UNICODE, st.just("x")),
        st.tuples(st.just("k"), UNICODE),
        st.just(("k", "v" * 64)),
    )

    def edit(pair: tuple[str, str]) -> Edit:
        def apply(case: Case) -> tuple[Verdict, Verdict, list[str]]:
            key, value = pair
            case.spec["template"]["metadata"]["labels"][key] = value
            return "invalid", "invalid", ["spec.template.metadata.labels", "spec.selector"]

        return apply

    return bad.map(edit)


def selectors() -> st.SearchStrategy[Edit]:
    bad = st.sampled_from(
        [
            {},
            {"matchLabels": {}},
            {"matchLabels": {"app": "other"}},
            # the test renames the app label: NotIn the template's own value
            {"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["fz"]}]},
        ]
    )

    def edit(selector: Body) -> Edit:
        def apply(case: Case) -> tuple[Verdict, Verdict, list[str]]:
            case.spec["selector"] = copy.deepcopy(selector)
            return "invalid", "invalid", ["spec.selector"]

        return apply

    return bad.map(edit)


def unknown_fields() -> st.SearchStrategy[Edit]:
    """Argo Rollouts fields Sluice does not do, and junk nested deep: refused by name."""
    where = st.sampled_from(
        [
            (
                "strategy.canary",
                "antiAffinity",
                {"preferredDuringSchedulingIgnoredDuringExecution": {}},
            ),
            ("strategy.canary", "canaryMetadata", {"labels": {"role": "canary"}}),
            ("strategy", "blueGreen", {"activeService": "x"}),
            ("strategy.canary", "junk", "NESTED"),
        ]
    )

    def edit(pair: tuple[tuple[str, str, Any], int]) -> Edit:
        (path, key, value), depth = pair

        def apply(case: Case) -> tuple[Verdict, Verdict, list[str]]:
            target, _ = _at(case, f"{path}.x")
            target[key] = nested(depth) if value == "NESTED" else value
            return "invalid", "invalid", [key]

        return apply

    return st.tuples(where, st.sampled_from([1, 30, 90])).map(edit)


def action_annotation() -> st.SearchStrategy[Edit]:
    def edit(value: str) -> Edit:
        def apply(case: Case) -> tuple[Verdict, Verdict, list[str]]:
            case.annotations["sluice.dev/action"] = value
            return "invalid", "invalid", ["sluice.dev/action"]

        return apply

    return st.one_of(st.just(""), UNICODE, st.just("promote; rm -rf /"), st.just("x" * 5000)).map(
        edit
    )


# ---------------------------------------------------------------- edits: traffic routing


ROUTERS = [
    {"istio": {"virtualService": {"name": "missing-vs", "routes": ["primary"]}}},
    {"gatewayAPI": {"httpRoute": "missing-route"}},
    {"nginx": {"stableIngress": "missing-ingress"}},
    {"smi": {}},
]


def missing_router() -> st.SearchStrategy[Edit]:
    """A router object that does not exist: a held rollout naming it, not InvalidSpec."""

    def edit(router: Body) -> Edit:
        def apply(case: Case) -> tuple[Verdict, Verdict, list[str]]:
            _canary(case)["trafficRouting"] = copy.deepcopy(router)
            return "valid", "valid", []

        return apply

    return st.sampled_from(ROUTERS).map(edit)


# RE2 runs these in linear time (a backtracking engine would explode on them): legal.
LINEAR_BOMBS = ["^(a+)+$", "(x+x+)+y", "^(([a-z])+.)+[A-Z]([a-z])+$", "(.*a){20}"]
# Not RE2 at all: a backreference, lookaround, possessive and atomic groups, bad syntax.
NOT_RE2 = ["(a)\\1", "(?=beta)beta", "(?<!x)y", "a++", "(?>a)", "(", "[z-a]", "(?P<n>a)(?P=n)"]


def header_routes() -> st.SearchStrategy[Edit]:
    def edit(pair: tuple[str, Body]) -> Edit:
        regex, router = pair

        def apply(case: Case) -> tuple[Verdict, Verdict, list[str]]:
            canary = _canary(case)
            canary["trafficRouting"] = {
                **copy.deepcopy(router),
                "managedRoutes": [{"name": "beta"}],
            }
            match = [{"headerName": "X-Group", "headerValue": {"regex": regex}}]
            canary["steps"] = [
                {"setHeaderRoute": {"name": "beta", "match": match}},
                {"setWeight": 10},
            ]
            if regex in NOT_RE2:
                return "invalid", "invalid", ["regex", "steps[0].setHeaderRoute"]
            return "valid", "valid", []

        return apply

    regex = st.one_of(st.sampled_from(NOT_RE2), st.sampled_from(LINEAR_BOMBS))
    return st.tuples(regex, st.sampled_from(ROUTERS[:2])).map(edit)


# ---------------------------------------------------------------- edits: analysis


def metric(name: str, query: str, **extra: Any) -> Body:
    return {
        "name": name,
        "provider": {"prometheus": {"address": NOWHERE, "query": query, "timeout": "1s"}},
        "successCondition": "result < 1",
        "interval": "30s",
        **extra,
    }


def template(name: str, metrics: list[Body], args: list[Body] | None = None) -> Body:
    return {
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": name},
        "spec": {"metrics": metrics, "args": args or []},
    }


INJECTIONS = [
    '"}) or vector(1) #',
    '\\"} or up{job=\\"',
    "`; drop`",
    "{{args.other}}",
    "web\n} or vector(1)",
    "é😀\u202e",
]


def promql_injection() -> st.SearchStrategy[Edit]:
    """An argument's value can never change the query: inside a label string it is escaped
    (accepted); outside one only a number or a duration may stand (refused)."""

    def edit(pair: tuple[str, bool]) -> Edit:
        value, outside = pair

        def apply(case: Case) -> tuple[Verdict, Verdict, list[str]]:
            q = (
                "sum(rate(http_requests_total[1m])) > {{args.pod}}"
                if outside
                else 'sum(rate(http_requests_total{pod="{{args.pod}}"}[1m]))'
            )
            case.templates.append(
                template("inj", [metric("m", q)], [{"name": "pod", "value": value}])
            )
            _canary(case)["analysis"] = {"templates": [{"templateName": "inj"}]}
            if outside:
                return "valid", "invalid", ["analysis", "metric m"]
            return "valid", "valid", []

        return apply

    return st.tuples(st.sampled_from(INJECTIONS), st.booleans()).map(edit)


def missing_references() -> st.SearchStrategy[Edit]:
    def edit(what: str) -> Edit:
        def apply(case: Case) -> tuple[Verdict, Verdict, list[str]]:
            canary = _canary(case)
            if what == "template":
                canary["analysis"] = {"templates": [{"templateName": "does-not-exist"}]}
                return "valid", "invalid", ["does-not-exist"]
            if what == "cluster-template":
                ref = {"templateName": "no-such-cluster-template", "clusterScope": True}
                canary["steps"] = [{"setWeight": 10}, {"analysis": {"templates": [ref]}}]
                return "valid", "invalid", ["no-such-cluster-template"]
            # A Secret that does not exist: the measurement errors, counted by its limits.
            arg = {"name": "tok", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}
            case.templates.append(template("sec", [metric("m", 'up{t="{{args.tok}}"}')], [arg]))
            canary["analysis"] = {"templates": [{"templateName": "sec"}]}
            return "valid", "either", ["args", "nope"]

        return apply

    return st.sampled_from(["template", "cluster-template", "secret"]).map(edit)


def hostile_templates() -> st.SearchStrategy[Edit]:
    """A template the API server takes but Sluice must refuse (field named) or run."""
    bad = st.sampled_from(
        [
            ({"interval": "999999999999h"}, "invalid", ["interval"]),
            ({"interval": "-5s"}, "invalid", ["interval"]),
            ({"timeout_": "10h"}, "invalid", ["timeout"]),
            ({"successCondition": "result <<< 1"}, "invalid", ["metric m"]),
            ({"successCondition": "__import__('os').system('id')"}, "invalid", ["metric m"]),
            ({"successCondition": "(" * 500 + "1" + ")" * 500}, "either", ["metric m"]),
            ({"count": 0}, "invalid", ["count"]),
            ({"count": 2**40}, "invalid", ["count"]),
            ({"failureLimit": -1}, "invalid", ["failureLimit"]),
            ({"query_": "é" * 300_000}, "either", ["query"]),
            ({"query_": 'up{a="{{args.missing}}"}'}, "invalid", ["args.missing"]),
            ({"nested": 60}, "either", ["extra"]),
            ({"name": "m", "dup": True}, "invalid", ["repeat"]),
            ({"address_": "file:///etc/passwd"}, "invalid", ["address"]),
            ({"address_": "http://" + "a" * 5000}, "invalid", ["address"]),
        ]
    )

    def edit(entry: tuple[Body, Verdict, list[str]]) -> Edit:
        change, verdict, fields = entry

        def apply(case: Case) -> tuple[Verdict, Verdict, list[str]]:
            m = metric("m", "up")
            prom = m["provider"]["prometheus"]
            for key, value in change.items():
                if key == "timeout_":
                    prom["timeout"] = value
                elif key == "query_":
                    prom["query"] = value
                elif key == "address_":
                    prom["address"] = value
                elif key == "nested":
                    prom["extra"] = nested(value)
                elif key != "dup":
                    m[key] = value
            metrics = [m, copy.deepcopy(m)] if change.get("dup") else [m]
            case.templates.append(template("hostile", metrics))
            _canary(case)["steps"] = [
                {"setWeight": 10},
                {"analysis": {"templates": [{"templateName": "hostile"}]}},
            ]
            # The step analysis needs a count with an interval: give one unless it is the edit.
            if "count" not in change:
                m.setdefault("count", 1)
                for other in metrics[1:]:
                    other.setdefault("count", 1)
            return "valid", verdict, [*fields, "hostile"]

        return apply

    return bad.map(edit)


def valid_analysis() -> st.SearchStrategy[Edit]:
    def edit(pair: tuple[bool, int]) -> Edit:
        inline, metrics_count = pair

        def apply(case: Case) -> tuple[Verdict, Verdict, list[str]]:
            ms = [
                metric(f"m{i}", f'up{{job="j{i}"}}', onProviderError="pause")
                for i in range(metrics_count)
            ]
            if inline:
                _canary(case)["analysis"] = {"metrics": ms}
            else:
                case.templates.append(template("good", ms))
                _canary(case)["analysis"] = {"templates": [{"templateName": "good"}]}
            return "valid", "valid", []

        return apply

    return st.tuples(st.booleans(), st.integers(1, 5)).map(edit)


# ---------------------------------------------------------------- all together

EDITS: dict[str, st.SearchStrategy[Edit]] = {
    "replicas": _number_edit("replicas", "replicas"),
    "progressDeadlineSeconds": _number_edit("progressDeadlineSeconds", "progressDeadlineSeconds"),
    "scaleDownDelaySeconds": _number_edit(
        "strategy.canary.scaleDownDelaySeconds", "scaleDownDelaySeconds"
    ),
    "revisionHistoryLimit": _number_edit("revisionHistoryLimit", "revisionHistoryLimit"),
    "weights": weights(),
    "valid-steps": valid_steps(),
    "durations": durations(),
    "duplicate-kinds": duplicate_kinds(),
    "too-many-steps": too_many_steps(),
    "container-strings": container_strings(),
    "template-annotations": template_annotations(),
    "labels": labels(),
    "selector": selectors(),
    "unknown-fields": unknown_fields(),
    "action": action_annotation(),
    "missing-router": missing_router(),
    "header-routes": header_routes(),
    "promql-injection": promql_injection(),
    "missing-references": missing_references(),
    "hostile-templates": hostile_templates(),
    "valid-analysis": valid_analysis(),
}
# Edits that replace the steps or the analysis do not combine with each other.
EXCLUSIVE = {
    "weights",
    "valid-steps",
    "durations",
    "duplicate-kinds",
    "too-many-steps",
    "header-routes",
    "hostile-templates",
    "promql-injection",
    "missing-references",
    "valid-analysis",
    "missing-router",
}


# Edits that can be valid; a "valid-looking" case draws only valid ones of them.
CAN_BE_VALID = [
    "weights",
    "valid-steps",
    "template-annotations",
    "missing-router",
    "header-routes",
    "promql-injection",
    "valid-analysis",
    "missing-references",
    "hostile-templates",
]


def _valid_in(mode: Mode) -> Callable[[Edit], bool]:
    def check(edit: Edit) -> bool:
        fresh, update, _ = edit(Case(mode=mode, spec=base_spec("fz")))
        return (fresh if mode == "fresh" else update) == "valid"

    return check


@st.composite
def cases(draw: st.DrawFn, primary: str | None = None) -> Case:
    """About half valid-looking (every edit valid), half hostile (any edits). `primary`, if
    given, is the first edit (the test goes round all of them, so each is exercised)."""
    mode: Mode = draw(st.sampled_from(["fresh", "update"]))
    hostile = (
        draw(st.booleans())
        if primary is None
        else primary not in CAN_BE_VALID or draw(st.booleans())
    )
    pool = sorted(EDITS) if hostile else CAN_BE_VALID
    # Mostly one edit (a second may hide the first behind an earlier refusal).
    names = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=2, unique=True))
    if primary is not None:
        names = [primary, *[n for n in names if n != primary]][: len(names)]
    exclusive = [n for n in names if n in EXCLUSIVE]
    names = [n for n in names if n not in EXCLUSIVE] + exclusive[:1]
    case = Case(mode=mode, spec=base_spec("fz"))
    verdicts: list[Verdict] = []
    for name in names:
        strategy = EDITS[name] if hostile else EDITS[name].filter(_valid_in(mode))
        fresh, update, fields = draw(strategy)(case)
        verdicts.append(fresh if mode == "fresh" else update)
        case.fields += fields
        case.edits.append(name)
    case.verdict = combined(verdicts)
    return case
