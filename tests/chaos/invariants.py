"""Invariants checked on a watch history (tests/chaos/recording.py), not on a final snapshot.

Each check returns the violations it found, as sentences naming the object and the
resourceVersion, so a failing test says what a user would have seen go wrong.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from tests.e2e.history import Seen

Body = dict[str, Any]
SLOT = "sluice.dev/slot"


@dataclass(frozen=True)
class Router:
    kind: str
    name: str
    weights: Callable[[Body], tuple[int, int]]  # (stable, canary)


def _status(seen: Seen) -> Body:
    return dict(seen.body.get("status") or {})


def _versions(history: Iterable[Seen], kind: str, name: str) -> list[Seen]:
    out: list[Seen] = []
    for seen in history:
        if seen.kind == kind and seen.name == name and (not out or out[-1].rv != seen.rv):
            out.append(seen)
    return out


def steps(history: list[Seen], name: str) -> tuple[list[str], Counter[int]]:
    """currentStepIndex only moves forward within a canary, by one per step passed; several
    in one status write only over steps that hold by themselves (never an untimed pause
    without a promote; a promote-full may jump anywhere; a retry starts a new attempt);
    returns the violations and how often each step index was reached by the rollout itself
    (not by an action), which StepReached Events count."""
    bad: list[str] = []
    reached: Counter[int] = Counter()
    prev: Body | None = None
    for seen in _versions(history, "Rollout", name):
        if seen.type == "DELETED":
            break
        st = _status(seen)
        steps_of = seen.body["spec"]["strategy"]["canary"]["steps"]
        n = len(steps_of)
        if prev is None:
            prev = st
            continue
        rev, idx, consumed = st.get("canaryRevision"), st.get("currentStepIndex"), None
        if st.get("consumedAction") != prev.get("consumedAction"):
            consumed = st.get("consumedAction")
        prev_rev, prev_idx = prev.get("canaryRevision"), prev.get("currentStepIndex")
        same = rev and rev == prev_rev and st.get("attempt", 0) == prev.get("attempt", 0)
        where = f"Rollout {name} at resourceVersion {seen.rv}"
        if same and idx is not None and prev_idx is not None:
            delta = idx - prev_idx
            first = prev_idx + 1  # the step an action (if any) completed into
            if delta < 0:
                bad.append(f"{where}: step went back from {prev_idx} to {idx}")
            elif delta >= 1 and consumed not in (None, "promote", "promote-full"):
                bad.append(f"{where}: step {idx} reached by action {consumed}")
            elif consumed != "promote-full":
                # One decision may pass several steps whose conditions already hold (a
                # killed predecessor did their work); an untimed pause passed without a
                # promote is a skipped step.
                for index in range(prev_idx + (1 if consumed else 0), idx):
                    if _holds(steps_of, index):
                        bad.append(f"{where}: untimed pause {index} passed without a promote")
                for index in range(first + (1 if consumed else 0), idx + 1):
                    reached[index] += 1
        elif rev and rev != prev_rev and idx not in (0, None):
            # A new canary whose first steps held at once (its pods were Ready by then).
            for index in range(idx):
                if _holds(steps_of, index):
                    bad.append(f"{where}: canary {rev} started past untimed pause {index}")
            for index in range(1, idx + 1):
                reached[index] += 1
        elif (
            not rev
            and prev_rev
            and prev_idx is not None
            and not prev.get("abort")
            and consumed is None
            and st.get("stableRevision") == prev_rev
        ):
            # Promoted: the last steps up to "promoting" may be reached in this decision.
            for index in range(prev_idx + 1, n + 1):
                reached[index] += 1
        prev = st
    return bad, reached


def _holds(steps_of: list[Body], index: int) -> bool:
    """An untimed pause: only a promote passes it."""
    pause = steps_of[index].get("pause") if index < len(steps_of) else None
    return isinstance(pause, dict) and not pause.get("duration")


def step_events(events: list[Body], reached: Counter[int], kills: int) -> list[str]:
    """Every StepReached Event is backed by a step the status reached (none repeated);
    at most one per operator kill was lost (posted after the status write)."""
    seen: Counter[int] = Counter()
    for event in events:
        if event["reason"] == "StepReached":
            match = re.match(r"step (\d+)/", event["message"])
            if match:
                seen[int(match.group(1))] += int(event.get("count") or 1)
    bad = [
        f"StepReached for step {k} posted {seen[k]} times, the status reached it {reached[k]}"
        for k in sorted(seen)
        if seen[k] > reached[k]
    ]
    lost = sum(reached.values()) - sum(seen.values())
    if lost > kills:
        bad.append(f"{lost} StepReached Events missing, more than the {kills} kills explain")
    return bad


def actions(history: list[Seen], name: str, applied: list[str]) -> list[str]:
    """Each action the test set was consumed exactly once (status.consumedAction, from
    history), in the order it was set."""
    consumed: list[str] = []
    last: str | None = None
    for seen in _versions(history, "Rollout", name):
        now = _status(seen).get("consumedAction")
        if now is not None and now != last:
            consumed.append(str(now))
        last = now
    if consumed != applied:
        return [f"Rollout {name}: actions set {applied}, consumed {consumed}"]
    return []


def action_events(
    events: list[Body], applied: list[str], kills: int, analysis_aborts: int = 0
) -> list[str]:
    """Promoted and Aborted Events: never more than the actions (and the aborts by a
    failed analysis) that ask for them."""
    count = Counter(e["reason"] for e in events for _ in range(int(e.get("count") or 1)))
    want = {
        "Promoted": sum(a in ("promote", "promote-full") for a in applied),
        "Aborted": applied.count("abort") + analysis_aborts,
    }
    bad = [f"{r}: {count[r]} Events for {w} actions" for r, w in want.items() if count[r] > w]
    lost = sum(w - count[r] for r, w in want.items())
    if lost > kills:
        bad.append(f"{lost} action Events missing, more than the {kills} kills explain")
    if count["ActionIgnored"]:
        bad.append(f"{count['ActionIgnored']} actions ignored")
    return bad


def _ready(dep: Body | None, observed: Body | None = None, new_only: bool = False) -> int:
    """Ready pods of a Deployment; `new_only`: of its current template only, which counts
    none until the Deployment controller has seen that template (`observed`: the template
    of the last version whose status had caught up with its generation)."""
    if dep is None:
        return 0
    spec, st = dep.get("spec") or {}, dep.get("status") or {}
    ready = int(st.get("readyReplicas") or 0)
    if not new_only:
        return ready
    if observed is None or spec.get("template") != observed:
        return 0
    updated = int(st.get("updatedReplicas") or 0)
    old = max(0, int(st.get("replicas") or 0) - updated)
    return max(0, min(ready - old, updated))


def traffic(history: list[Seen], name: str, replicas: int, router: Router | None) -> list[str]:
    """At every version of the Rollout's objects, in API-server order:
    - traffic reaches a slot only while it has a Ready pod of its current template
      (replica mode: the root Service's selector; a router: its weights);
    - Ready capacity behind the traffic (the slots that take it) is at least `replicas`
      once the Rollout was first Healthy, except right after an abort (traffic moves back
      to the stable at once, which then refills)."""
    wanted = {
        ("Rollout", name),
        ("Deployment", f"{name}-a"),
        ("Deployment", f"{name}-b"),
        ("Service", name),
        ("Service", f"{name}-stable"),
        ("Service", f"{name}-canary"),
    }
    if router is not None:
        wanted.add((router.kind, router.name))
    timeline = [s for s in history if (s.kind, s.name) in wanted]
    rollouts = _versions(timeline, "Rollout", name)
    state: dict[tuple[str, str], Body | None] = {}
    healthy = False
    bad: list[str] = []

    # A canary's abort moves traffic back at once (the status saying so may be written
    # later: a 409 delays it), and the stable refills: a dip then is documented, until
    # the first time capacity is whole again after the abort was recorded.
    aborted: dict[str, int] = {}
    for s in rollouts:
        revision = _status(s).get("canaryRevision")
        if _status(s).get("abort") and revision:
            aborted.setdefault(str(revision), s.rv)
    refilled: set[str] = set()
    # "Whole again" counts only once a scale-down asked earlier has been carried out: a
    # Deployment scaled 4 -> 3 then back to 4 may still say 4/4 Ready and lose the pod
    # of the 4 -> 3 afterwards (seen in the 50-kill run: 3 Ready a moment after an abort).
    shrinking: dict[str, int] = {}  # Deployment -> replicas asked, not yet reached

    observed: dict[str, Body] = {}  # Deployment -> the template its controller has seen
    for seen in timeline:
        before = state.get((seen.kind, seen.name))
        state[(seen.kind, seen.name)] = None if seen.type == "DELETED" else seen.body
        if seen.kind == "Deployment" and seen.type != "DELETED":
            _follow_shrink(shrinking, seen, before)
            generation = int(seen.body["metadata"].get("generation") or 0)
            if int((seen.body.get("status") or {}).get("observedGeneration") or 0) >= generation:
                observed[seen.name] = seen.body["spec"]["template"]
        if seen.kind == "Rollout" and _status(seen).get("phase") == "Healthy":
            healthy = True
        taking = _taking(state, name, router)
        if taking is None or not healthy:
            continue  # the first version is stable directly: nothing else could serve
        where = f"{seen.kind} {seen.name} resourceVersion {seen.rv}"
        for slot in taking:
            dep = state.get(("Deployment", f"{name}-{slot}"))
            if _ready(dep, observed.get(f"{name}-{slot}"), new_only=True) < 1:
                bad.append(f"{where}: traffic to {name}-{slot} with no Ready pod")
        capacity = sum(_ready(state.get(("Deployment", f"{name}-{s}"))) for s in taking)
        current = state.get(("Rollout", name)) or {}
        revision = str((current.get("status") or {}).get("canaryRevision") or "")
        whole = capacity >= replicas and not any(f"{name}-{s}" in shrinking for s in taking)
        if revision in aborted and whole and seen.rv > aborted[revision]:
            refilled.add(revision)
        excused = revision in aborted and revision not in refilled and len(taking) == 1
        if capacity < replicas and not excused:
            bad.append(f"{where}: Ready capacity {capacity} < {replicas} (slots {taking})")
    return bad


def _follow_shrink(shrinking: dict[str, int], seen: Seen, before: Body | None) -> None:
    want = int((seen.body.get("spec") or {}).get("replicas") or 0)
    had = int(((before or {}).get("spec") or {}).get("replicas") or 0)
    if before is not None and want < had:
        shrinking[seen.name] = want
    if int((seen.body.get("status") or {}).get("replicas") or 0) <= shrinking.get(seen.name, -1):
        del shrinking[seen.name]


def _taking(
    state: dict[tuple[str, str], Body | None], name: str, router: Router | None
) -> list[str] | None:
    """The slots that take traffic, or None before the objects that say so exist."""
    if router is None:
        root = state.get(("Service", name))
        if root is None:
            return None
        selector = (root.get("spec") or {}).get("selector") or {}
        return [selector[SLOT]] if SLOT in selector else ["a", "b"]
    obj = state.get((router.kind, router.name))
    stable_svc, canary_svc = (
        state.get(("Service", f"{name}-stable")),
        state.get(("Service", f"{name}-canary")),
    )
    if obj is None or stable_svc is None or canary_svc is None:
        return None
    stable_w, canary_w = router.weights(obj)
    out = []
    for weight, svc in ((stable_w, stable_svc), (canary_w, canary_svc)):
        slot = ((svc.get("spec") or {}).get("selector") or {}).get(SLOT)
        if weight > 0 and slot and slot not in out:
            out.append(str(slot))
    return out


def steps_per_round(events: list[Body], rounds: int) -> list[str]:
    """No step reported twice in one round: each StepReached index at most once a round
    (for a history with holes, where the status transitions cannot all be seen)."""
    seen: Counter[int] = Counter()
    for event in events:
        match = (
            re.match(r"step (\d+)/", event["message"]) if event["reason"] == "StepReached" else None
        )
        if match:
            seen[int(match.group(1))] += int(event.get("count") or 1)
    return [f"step {k} reached {n} times in {rounds} rounds" for k, n in seen.items() if n > rounds]


LIVE_RUN = ("Pending", "Running", "Holding")


def _round_ends(history: list[Seen], name: str) -> list[tuple[int, str]]:
    """(resourceVersion, canary revision) of each version of the Rollout that ended a
    round: the canary promoted (stable now, no canary) or aborted."""
    ends: list[tuple[int, str]] = []
    prev: Body = {}
    for seen in _versions(history, "Rollout", name):
        st = _status(seen)
        was = str(prev.get("canaryRevision") or "")
        if was and not st.get("canaryRevision") and st.get("stableRevision") == was:
            ends.append((seen.rv, was))
        elif st.get("abort") and st.get("canaryRevision") and not prev.get("abort"):
            ends.append((seen.rv, str(st["canaryRevision"])))
        prev = st
    return ends


def analysis_runs(history: list[Seen], name: str) -> list[str]:
    """No AnalysisRun of the Rollout orphaned or duplicated:
    - each run is owned by the Rollout (its uid), which still exists while the run does;
    - at most one run per (revision, attempt, kind, step): a second object for the same
      analysis, even under the same name after a delete, is a duplicate;
    - a run is never started after its round ended, and a run of a round that ended is
      terminal (not Pending/Running/Holding) by the time the next round ends, and at the
      end of the history. (It cannot be at the very write that ends the round: the run's
      verdict is the operator's next write, on the run.)"""
    bad: list[str] = []
    rollouts = _versions(history, "Rollout", name)
    uids = {str(s.body["metadata"].get("uid")) for s in rollouts if s.body["metadata"].get("uid")}
    deleted = next((s.rv for s in rollouts if s.type == "DELETED"), None)
    ends = _round_ends(history, name)
    runs: dict[str, list[Seen]] = {}  # uid -> its versions
    for seen in history:
        labels = seen.body["metadata"].get("labels") or {}
        if seen.kind == "AnalysisRun" and labels.get("sluice.dev/rollout") == name:
            runs.setdefault(str(seen.body["metadata"].get("uid")), []).append(seen)
    keys: dict[tuple[str, str, str, Any], list[str]] = {}
    for uid, versions in runs.items():
        first, last = versions[0], versions[-1]
        run = first.name
        spec = first.body.get("spec") or {}
        revision, kind = str(spec.get("revision")), str(spec.get("kind"))
        attempt = run.rsplit("-", 2)[-2] if run.count("-") >= 2 else ""
        keys.setdefault((revision, attempt, kind, spec.get("step")), []).append(f"{run} ({uid})")
        owners = first.body["metadata"].get("ownerReferences") or []
        if not any(o.get("kind") == "Rollout" and str(o.get("uid")) in uids for o in owners):
            bad.append(f"AnalysisRun {run}: orphaned, owned by {owners}, not Rollout {name}")
        gone = last.type == "DELETED"
        if deleted is not None and not (gone and last.rv >= deleted):
            bad.append(f"AnalysisRun {run}: outlived Rollout {name} (deleted at {deleted})")
        mine = [rv for rv, rev in ends if rev == revision]
        if mine and first.rv > mine[0]:
            bad.append(f"AnalysisRun {run}: started at {first.rv}, its round over at {mine[0]}")
        if not mine or gone:
            continue  # a round still going, or a run pruned (deleted) by the operator
        later = [rv for rv, rev in ends if rv > mine[0] and rev != revision][:1]
        for until in [*later, None]:
            upto = [v for v in versions if until is None or v.rv <= until]
            if not upto:
                continue
            phase = _status(upto[-1]).get("phase") or "Pending"
            if phase in LIVE_RUN:
                when = f"when the next round ended ({until})" if until else "at the end"
                bad.append(f"AnalysisRun {run}: still {phase} {when}, its round over")
                break
    for key, found in keys.items():
        if len(found) > 1:
            bad.append(f"Rollout {name}: {len(found)} AnalysisRuns for {key}: {found}")
    return bad
