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
        elif _reverted(prev, st):
            pass  # a failed post-promotion analysis: the promoted revision back as aborted
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


def _reverted(prev: Body, st: Body) -> bool:
    """The write that switches a promoted revision back (its post-promotion analysis
    failed): it is the canary again, aborted, past its last step; not a new canary."""
    return bool(
        prev.get("postPromotionRun")
        and not prev.get("canaryRevision")
        and st.get("abort")
        and st.get("canaryRevision") == prev.get("stableRevision")
    )


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
      to the stable at once, which then refills), a failed post-promotion analysis's
      switch back to the previous version included."""
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
        current = dict((state.get(("Rollout", name)) or {}).get("status") or {})
        revision = str(current.get("canaryRevision") or "")
        baked = str(current.get("stableRevision") or "")
        if not revision and current.get("postPromotionRun") and baked in aborted:
            # A failed post-promotion analysis is an abort of the promoted revision: traffic
            # back to the warm previous (it kept only the pods it ran) before the status
            # says so; only traffic off the baked slot is excused.
            revision = baked if taking != [current.get("stableSlot")] else ""
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


def _bake_ends(history: list[Seen], name: str) -> list[tuple[int, str]]:
    """(resourceVersion, revision) of each version that ended a post-promotion analysis
    (passed, reverted, or a new canary started): a postPromotion run's round ends there,
    after the promotion that started it."""
    ends: list[tuple[int, str]] = []
    prev: Body = {}
    for seen in _versions(history, "Rollout", name):
        st = _status(seen)
        if prev.get("postPromotionRun") and not st.get("postPromotionRun"):
            ends.append((seen.rv, str(prev.get("stableRevision") or "")))
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
      verdict is the operator's next write, on the run.) A post-promotion run's round
      ends with its analysis, not with the promotion."""
    bad: list[str] = []
    rollouts = _versions(history, "Rollout", name)
    uids = {str(s.body["metadata"].get("uid")) for s in rollouts if s.body["metadata"].get("uid")}
    deleted = next((s.rv for s in rollouts if s.type == "DELETED"), None)
    ends, bakes = _round_ends(history, name), _bake_ends(history, name)
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
        if kind == "postPromotion":  # its analysis ends its round (or the abort, at once)
            mine = [rv for rv, rev in bakes if rev == revision] or mine
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


def _run_key(seen: Seen) -> tuple[str, str, Any]:
    """(revision, attempt, step) of an AnalysisRun version; its name carries the attempt."""
    spec = seen.body.get("spec") or {}
    attempt = seen.name.rsplit("-", 2)[-2] if seen.name.count("-") >= 2 else ""
    return str(spec.get("revision")), attempt, spec.get("step")


def _is_run_of(seen: Seen, name: str) -> bool:
    labels = seen.body["metadata"].get("labels") or {}
    return seen.kind == "AnalysisRun" and labels.get("sluice.dev/rollout") == name


def step_analyses(history: list[Seen], name: str) -> list[str]:
    """A step after a step analysis is reached only once that analysis succeeded: the
    first Rollout version past analysis step k of a canary (revision, attempt), at a later
    step or promoted, comes after a Successful step-k run of that revision and attempt (a
    run stopped by `terminate` ends Successful too: that is no verdict), unless a promote
    action passed the step."""
    passed: set[tuple[str, str, Any]] = set()  # runs that succeeded so far
    crossed: set[tuple[str, str, int]] = set()
    bad: list[str] = []
    prev: Body = {}
    for seen in history:
        if _is_run_of(seen, name):
            spec = seen.body.get("spec") or {}
            verdict = _status(seen).get("phase") == "Successful" and not spec.get("terminate")
            if spec.get("kind") == "step" and verdict:
                passed.add(_run_key(seen))
            continue
        if seen.kind != "Rollout" or seen.name != name or seen.type == "DELETED":
            continue
        st = _status(seen)
        steps_of = seen.body["spec"]["strategy"]["canary"]["steps"]
        analysed = [i for i, step in enumerate(steps_of) if "analysis" in step]
        rev, idx = str(st.get("canaryRevision") or ""), st.get("currentStepIndex")
        attempt = str(st.get("attempt", 0))  # a promotion keeps the attempt
        if (
            not rev
            and prev.get("canaryRevision")
            and st.get("stableRevision") == prev.get("canaryRevision")
        ):
            rev, idx = str(prev["canaryRevision"]), len(steps_of)  # promoted: past them all
        if rev and idx is not None and not st.get("abort"):
            promoted_by_hand = st.get("consumedAction") != prev.get("consumedAction") and str(
                st.get("consumedAction")
            ).startswith("promote")
            for k in analysed:
                if idx <= k or (rev, attempt, k) in crossed:
                    continue
                crossed.add((rev, attempt, k))
                if (rev, attempt, k) not in passed and not promoted_by_hand:
                    bad.append(
                        f"Rollout {name} at resourceVersion {seen.rv}: canary {rev} (attempt "
                        f"{attempt}) past analysis step {k} without its run succeeding"
                    )
        prev = st
    return bad


def post_promotion(history: list[Seen], name: str, router: Router | None) -> list[str]:
    """Post-promotion analysis, for a Rollout that has one:
    - each promotion has exactly one postPromotion run of its revision, made by the
      decision that promoted: created before that decision's status write (its actions
      come first) but never before the status that decision read was written. A canary
      whose status went straight from its last step to aborted may have one (promoted and
      reverted within one decision, after a kill or a verdict quicker than the status
      write); no other canary has any;
    - a failed run switches back to the previous version before the next canary starts
      (or by the end of the history): the Rollout's stable is the previous revision in its
      slot, the traffic (root Service selector, or the router's weights through the
      stable and canary Services) on that slot alone, whose Deployment is of the previous
      revision; and it stays there until then."""
    bad: list[str] = []
    rollouts = [s for s in _versions(history, "Rollout", name) if s.type != "DELETED"]
    # revision -> (rv its last status before the promotion was first written, promotion
    # rv, previous revision, its slot, promoted in status rather than reverted at once)
    rounds: dict[str, tuple[int, int, str, str, bool]] = {}
    prev: Body = {}
    prev_since = 0
    for seen in rollouts:
        st = _status(seen)
        since = seen.rv if st != prev else prev_since
        was = str(prev.get("canaryRevision") or "")
        canary = seen.body["spec"]["strategy"]["canary"]
        promoted = not st.get("canaryRevision") and st.get("stableRevision") == was
        at_once = (
            st.get("canaryRevision") == was
            and st.get("abort")
            and not prev.get("abort")
            and st.get("currentStepIndex") == len(canary["steps"])
        )
        if canary.get("postPromotionAnalysis") and was and (promoted or at_once):
            before = (str(prev.get("stableRevision")), str(prev.get("stableSlot")))
            rounds[was] = (prev_since, seen.rv, *before, promoted)
        prev, prev_since = st, since
    runs: dict[str, dict[str, list[Seen]]] = {}  # revision -> run uid -> versions
    for seen in history:
        if _is_run_of(seen, name) and (seen.body.get("spec") or {}).get("kind") == "postPromotion":
            revision = _run_key(seen)[0]
            uid = str(seen.body["metadata"].get("uid"))
            runs.setdefault(revision, {}).setdefault(uid, []).append(seen)
    for revision in runs:
        if revision not in rounds:
            bad.append(f"Rollout {name}: post-promotion run of {revision}, never promoted")
    for revision, (read, rv, previous, slot, promoted) in rounds.items():
        found = runs.get(revision, {})
        if len(found) > 1 or (promoted and not found):
            bad.append(f"Rollout {name}: {len(found)} post-promotion runs for {revision}")
        for versions in found.values():
            if versions[0].rv < read:
                bad.append(
                    f"AnalysisRun {versions[0].name}: created at {versions[0].rv}, before the "
                    f"status ({read}) the decision that promoted at {rv} read"
                )
            failed = next((v.rv for v in versions if _status(v).get("phase") == "Failed"), None)
            if failed is not None:
                bad += _switched_back(history, name, router, revision, failed, previous, slot)
    return bad


def _switched_back(
    history: list[Seen],
    name: str,
    router: Router | None,
    revision: str,
    failed: int,
    previous: str,
    slot: str,
) -> list[str]:
    """After `revision`'s post-promotion run failed (at `failed`): back on `previous`."""
    wanted = {("Rollout", name), ("Service", name), ("Service", f"{name}-stable")}
    wanted |= {("Service", f"{name}-canary"), ("Deployment", f"{name}-{slot}")}
    if router is not None:
        wanted.add((router.kind, router.name))
    state: dict[tuple[str, str], Body | None] = {}
    back_at: int | None = None
    for seen in history:
        if (seen.kind, seen.name) not in wanted:
            continue
        state[(seen.kind, seen.name)] = None if seen.type == "DELETED" else seen.body
        st = dict((state.get(("Rollout", name)) or {}).get("status") or {})
        if seen.rv > failed and st.get("canaryRevision") not in ("", None, revision):
            break  # the next canary started: the window is over
        if seen.rv <= failed:
            continue
        dep = state.get(("Deployment", f"{name}-{slot}")) or {}
        on_previous = (
            st.get("stableRevision") == previous
            and st.get("stableSlot") == slot
            and _taking(state, name, router) == [slot]
            and (dep.get("metadata", {}).get("labels") or {}).get("sluice.dev/revision") == previous
        )
        if on_previous and back_at is None:
            back_at = seen.rv
        elif back_at is not None and not on_previous:
            return [
                f"{seen.kind} {seen.name} resourceVersion {seen.rv}: traffic left previous "
                f"{previous} (slot {slot}) after {revision}'s post-promotion analysis failed"
            ]
    if back_at is None:
        return [
            f"Rollout {name}: post-promotion run of {revision} failed at {failed}, traffic "
            f"never back on previous {previous} (slot {slot})"
        ]
    return []
