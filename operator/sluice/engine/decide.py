"""The decision core: from (Rollout, observed children, now) to actions and a new status.

Pure: no client, no clock, no logging. The handler observes the cluster, calls
`decide`, applies the actions, writes the status it returns and comes back after
`requeue_after` seconds (or when a watched object changes).

Two child Deployments, slots `a` and `b`, take turns: the canary goes into the
slot the stable does not hold, and promotion makes it the stable slot without
re-rolling a pod (ping-pong). The previous stable stays warm for
`scaleDownDelaySeconds`, so that setting the template back is instant.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sluice.api.rollout import (
    AbortInfo,
    Condition,
    Phase,
    PreviousStatus,
    RolloutSpec,
    RolloutStatus,
    SlotStatus,
)
from sluice.engine import bluegreen, hooks, rollback
from sluice.engine import replicas as rep
from sluice.engine.baseline import baseline_actions
from sluice.engine.gates import LIVE, PASS, Gate, alert_gate, alert_run_prefix, gate, run_name
from sluice.engine.hashing import template_hash
from sluice.engine.jobs import prune_jobs
from sluice.engine.steps import Progress, canary_scale, goal_weight, kind_of
from sluice.engine.timefmt import fmt, fmt_seconds, parse, since
from sluice.engine.types import (
    SLOTS,
    Action,
    CreateRun,
    Decision,
    DeleteRun,
    DeploySlot,
    EventNote,
    HeaderRoute,
    Observed,
    RemoveAction,
    RolloutInput,
    ScaleSlot,
    SetTraffic,
    Slot,
    TerminateRun,
    TrafficPlan,
    other,
)
from sluice.engine.validate import InvalidSpec, check_action, parse_spec, selector_string
from sluice.engine.workload import scale_workload

VERIFY_POLL_SECONDS = 2.0  # a router's verification is also re-read this often, not only on events
CONDITION_TYPES = ("Progressing", "Paused", "Completed", "Healthy", "Degraded", "InvalidSpec")


MESSAGE_LIMIT = 1024  # of a status message, a condition or an Event: an API error body can be huge
EVENT_LIMIT = 20  # Events of one decision; more are summed up in the last one


def clip(text: str, limit: int = MESSAGE_LIMIT) -> str:
    return text if len(text) <= limit else f"{text[: limit - 30]}... ({len(text)} characters)"


def decide(inp: RolloutInput, observed: Observed, now: datetime) -> Decision:
    return _Decider(inp, observed, now).run()


def describe_step(spec: RolloutSpec, index: int) -> str:
    if spec.strategy.blue_green is not None:
        return bluegreen.describe(spec, index)
    steps = spec.strategy.canary.steps
    if index >= len(steps):
        return f"step {index}/{len(steps)}: promoting to stable"
    return f"step {index}/{len(steps)}: {kind_of(steps[index]).describe(steps[index])}"


class _Decider:
    def __init__(self, inp: RolloutInput, observed: Observed, now: datetime) -> None:
        self.inp = inp
        self.obs = observed
        self.now = now
        self.old = inp.status
        self.s: RolloutStatus = inp.status.model_copy(deep=True)
        self.events: list[EventNote] = []
        self.actions: list[Action] = []
        self.targets: dict[Slot, tuple[int, bool]] = {}  # slot -> (replicas, deploy template)
        self.due: list[float] = []
        self.invalid: str | None = None
        self.deadline_exceeded = False
        self.replacing = False  # a new template waits for the stable to be refilled
        self.wanted_runs: set[str] = set()  # AnalysisRuns that may keep running
        self.held: Gate | None = None  # an analysis verdict that pauses the rollout
        self.wanted_plan: TrafficPlan | None = None  # asked of the routers by the current step
        self.waiting_for = ""  # what the current step waits on, for the status message
        self.abort_hold = False  # aborted, but the stable is not back yet (dynamicStableScale)

    # ------------------------------------------------------------ entry

    def run(self) -> Decision:
        try:
            check_action(self.inp.action)
            spec = self.inp.parsed or parse_spec(self.inp.spec, self.inp.name)
        except InvalidSpec as exc:
            return self._invalid(str(exc))
        self.spec = spec
        self.replicas = spec.replicas
        self.routed = spec.strategy.traffic_routing() is not None
        self.dynamic = self.routed and spec.strategy.canary.dynamic_stable_scale
        if spec.template is None:  # a workloadRef's Deployment the controller could not take
            why = self.obs.rejected.get("child:workload", "the Deployment was not read")
            return self._invalid(why if why.startswith("spec.") else f"spec.workloadRef: {why}")
        self.blue_green = spec.strategy.blue_green is not None
        self.revision = template_hash(spec.template)
        if self.revision in self.obs.rejected:
            return self._invalid(f"spec.template: {self.obs.rejected[self.revision]}")
        ours = f"{self.inp.name}-{self.revision}-"
        for subject, message in sorted(self.obs.rejected.items()):
            # An AnalysisRun of this revision that cannot be made; a child name that is taken.
            if subject.startswith((ours, "child:")):
                return self._invalid(message)
        self.s.observed_generation = self.inp.generation
        self.s.selector = selector_string(spec.selector)

        action = self._take_action()
        if not self.s.stable_revision:
            self._first_or_adopt()
        self._failed_bake_first()
        self._follow_template()
        if action == "abort" and self.replacing:
            # An abort is of the new template: no refill needed, traffic goes to the stable.
            self.replacing = False
            self._start_canary()
        if action:
            self._apply_action(action)

        self._hold_deadline_while_paused()
        if self.s.canary_revision:
            if self.s.abort:
                self._aborted()
            elif self.replacing:
                self._refill_stable()
            elif self.blue_green:
                bluegreen.advance(self)
            else:
                self._steps()
        else:
            self._steady()
        if not self.s.canary_revision and self.s.post_promotion_run:
            self._post_promotion()
        self._previous()
        self._stop_unwanted_runs()
        self._prune_runs()
        prune_jobs(self)
        return self._finish()

    # ------------------------------------------------------------ helpers

    @property
    def stable_slot(self) -> Slot:
        slot: Slot = self.s.stable_slot or "a"
        return slot

    @property
    def canary_slot(self) -> Slot:
        return other(self.stable_slot)

    def _ready(self, slot: Slot, revision: str) -> int:
        seen = self.obs.slots[slot]
        return seen.ready if seen.exists and seen.revision == revision else 0

    def _event(self, reason: str, message: str, warning: bool = False) -> None:
        self.events.append(EventNote(reason, clip(message), "Warning" if warning else "Normal"))

    def _due_in(self, seconds: float) -> None:
        self.due.append(max(seconds, 0.0))

    def _step_count(self) -> int:
        if self.blue_green:
            return bluegreen.STAGES
        return len(self.spec.strategy.canary.steps)

    def _clear_canary(self) -> None:
        self.s.canary_revision = ""
        self.s.current_step_index = None
        self.s.canary_weight = 0
        self.s.abort = None
        self.s.pause_start_time = None
        self.s.step_start_time = None
        self.s.acknowledged_runs = []
        self.s.gradual_rollback = None

    # ------------------------------------------------------------ actions (annotation)

    def _take_action(self) -> str | None:
        action = self.inp.action
        if action is None:
            self.s.consumed_action = None
            return None
        self.actions.append(RemoveAction())
        if self.s.consumed_action == action:
            return None  # applied before a restart; only the annotation's removal is left
        self.s.consumed_action = action
        return action

    def _apply_action(self, action: str) -> None:
        s = self.s
        running = bool(s.canary_revision)
        if action == "pause":
            s.user_paused = True
            self._event("Paused", "paused by the sluice.dev/action annotation")
        elif action == "resume":
            s.user_paused = False
            s.step_start_time = fmt(self.now) if running else s.step_start_time
            note = "; spec.paused still holds it" if self.spec.paused else ""
            self._event("Resumed", f"resumed by the sluice.dev/action annotation{note}")
        elif action == "abort":
            if running and not s.abort:
                self._abort("UserAbort", "aborted by the sluice.dev/action annotation")
            elif not running and s.post_promotion_run:
                self._revert_promotion(
                    Gate("abort", "UserAbort", "aborted during post-promotion analysis")
                )
            else:
                self._event("ActionIgnored", "abort: no canary is in progress", warning=True)
        elif action == "retry":
            if running and s.abort:
                s.abort = None
                s.current_step_index = 0
                s.canary_weight = 0
                s.pause_start_time = None
                s.attempt = s.attempt + 1
                s.acknowledged_runs = []
                s.step_start_time = fmt(self.now)
                self._event("Retried", f"retrying canary {s.canary_revision} from step 0")
            else:
                self._event("ActionIgnored", "retry: nothing was aborted", warning=True)
        elif action == "rollback-gradually" or (
            s.gradual_rollback and action.startswith("promote")
        ):
            rollback.start(self, action)
        elif not running and s.post_promotion_run and action in ("promote", "promote-full"):
            self._acknowledge_held_runs(s.stable_revision)
            self._event("Promoted", f"{action}: post-promotion analysis accepted by annotation")
        elif not running or s.abort or self.replacing:
            why = "the canary is aborted; use retry" if s.abort else "no canary is in progress"
            if self.replacing:
                why = f"canary {self.revision} is not started yet (the stable is refilled first)"
            self._event("ActionIgnored", f"{action}: {why}", warning=True)
        else:  # promote, promote-full
            index = s.current_step_index or 0
            target = self._step_count() if action == "promote-full" else index + 1
            target = min(target, self._step_count())
            s.current_step_index = target
            s.pause_start_time = None
            s.user_paused = False
            s.step_start_time = fmt(self.now)
            self._acknowledge_held_runs()
            self._event("Promoted", f"{action} by annotation: {describe_step(self.spec, target)}")

    # ------------------------------------------------------------ which version is where

    def _first_or_adopt(self) -> None:
        """No stable yet: adopt a slot that already runs (status lost), else deploy directly."""
        seen = {slot: self.obs.slots[slot] for slot in SLOTS if self.obs.slots[slot].exists}
        same = [slot for slot, o in seen.items() if o.revision == self.revision]
        running = sorted((o.ready, slot) for slot, o in seen.items() if o.revision and o.replicas)
        if same:
            slot, revision = same[0], self.revision
        elif running:
            slot = running[-1][1]
            revision = seen[slot].revision
        else:
            slot, revision = "a", self.revision
            self._event(
                "Deployed",
                f"first revision {revision} becomes stable directly: there is nothing to "
                "compare a canary with",
            )
            self.s.step_start_time = fmt(self.now)
        self.s.stable_slot = slot
        self.s.stable_revision = revision

    def _follow_template(self) -> None:
        s, revision = self.s, self.revision
        previous = s.previous
        if revision == s.stable_revision:
            if s.canary_revision:
                if s.abort:
                    self._event("AbortResolved", f"template set back to stable {revision}")
                else:
                    self._event(
                        "Reverted",
                        f"template set back to stable {revision} mid-rollout: traffic back to "
                        f"stable at once, canary {s.canary_revision} removed",
                        warning=True,
                    )
                self._clear_canary()
        elif (
            previous
            and revision == previous.revision
            and self._ready(previous.slot, revision) >= self.replicas
        ):
            self._rollback_to_previous()
        elif revision != s.canary_revision:
            if self._canary_serves_for_stable():
                self.replacing = True
            else:
                self._start_canary()

    def _canary_serves_for_stable(self) -> bool:
        """The running canary takes traffic in place of stable pods that are not back yet.

        Replacing it now would drop its Ready pods (the new template goes into its slot)
        while the stable is short of R Ready ones: Ready capacity would fall below R.
        """
        s = self.s
        return (
            bool(s.canary_revision)
            and not s.abort
            and s.canary_weight > 0
            and self._ready(self.stable_slot, s.stable_revision) < self.replicas
        )

    def _start_canary(self) -> None:
        s = self.s
        if s.canary_revision:
            self._event(
                "CanaryReplaced",
                f"new template {self.revision} replaces canary {s.canary_revision}; "
                "starting over at step 0",
            )
        else:
            self._event(
                "RolloutStarted",
                f"canary {self.revision} beside stable {s.stable_revision}: "
                f"{'' if self.blue_green else f'{self._step_count()} steps; '}"
                f"{describe_step(self.spec, 0)}",
            )
        self._clear_canary()
        s.canary_revision = self.revision
        s.current_step_index = 0
        s.attempt = s.attempt + 1
        s.post_promotion_run = None  # the stable's bake ends: its warm slot takes the canary
        s.step_start_time = fmt(self.now)
        if s.previous and s.previous.slot == self.canary_slot:
            s.previous = None  # the warm version's slot now holds the canary

    def _rollback_to_previous(self) -> None:
        s = self.s
        assert s.previous is not None
        back: Slot = s.previous.slot
        left, left_revision = self.stable_slot, s.stable_revision
        self._clear_canary()
        s.stable_slot = back
        s.stable_revision = self.revision
        s.post_promotion_run = None
        s.previous = self._warm(left, left_revision)
        self._event(
            "RolledBack",
            f"template set back to previous {self.revision}, still warm: traffic switched at "
            f"once; {left_revision} kept warm for "
            f"{self.spec.strategy.scale_down_delay()}s",
            warning=True,
        )

    def _warm(self, slot: Slot, revision: str, keep: bool = False) -> PreviousStatus | None:
        delay = self.spec.strategy.scale_down_delay()
        if delay <= 0 and not keep:
            return None
        until = self.now + timedelta(seconds=delay)
        return PreviousStatus(slot=slot, revision=revision, scale_down_at=fmt(until))

    # ------------------------------------------------------------ states

    def _abort(self, reason: str, message: str) -> None:
        self.s.abort = AbortInfo(
            reason=reason,
            message=clip(message),
            time=fmt(self.now),
            revision=self.s.canary_revision,
        )
        self.s.canary_weight = 0
        self.s.pause_start_time = None
        self.s.gradual_rollback = None  # an abort ends a walk back: 0 at once
        self.wanted_plan = None  # what the step asked of the routers is off
        self.waiting_for = ""
        self.wanted_runs.clear()  # an aborted canary's analysis ends with it, now
        self._event("Aborted", f"{reason}: {message}; traffic back to stable", warning=True)

    def _refill_stable(self) -> None:
        """Before a canary is replaced: stable back to R, the old canary held as it is."""
        self.targets[self.stable_slot] = (self.replicas, False)
        self.targets[self.canary_slot] = (self.obs.slots[self.canary_slot].replicas, False)

    def _stable_not_back(self) -> bool:
        """Must traffic stay where it is until the stable has its pods Ready again?

        With dynamicStableScale the stable shrank with its share: it takes its traffic back
        at full size only. A reverted promotion goes back to a warm previous version that
        may have no pod left (it kept only what it ran): not before it has a Ready one."""
        held, s = self.obs.traffic.plan, self.s
        if held is None:
            return False
        ready = self._ready(self.stable_slot, s.stable_revision)
        if held.stable_slot != self.stable_slot:
            return ready < (self.replicas if self.dynamic else 1)
        return self.dynamic and held.canary_weight > 0 and ready < self.replicas

    def _aborted(self) -> None:
        s = self.s
        assert s.abort is not None
        self.targets[self.stable_slot] = (self.replicas, False)
        held = self.obs.traffic.plan
        if held is not None and self._stable_not_back():
            # The stable shrank (or kept no pod): traffic goes back once it can carry it.
            self.abort_hold = True
            s.canary_weight = held.canary_weight
            self.waiting_for = f"stable {s.stable_revision} Ready before traffic returns"
            if self.dynamic:
                self.waiting_for = f"stable back at {self.replicas} ready before traffic returns"
            self.targets[self.canary_slot] = (self.obs.slots[self.canary_slot].replicas, False)
            return
        s.canary_weight = 0
        delay = self.spec.strategy.abort_scale_down_delay()
        left = delay - since(s.abort.time, self.now)
        if left > 0:
            self.targets[self.canary_slot] = (self.obs.slots[self.canary_slot].replicas, False)
            self._due_in(left)

    def _steady(self) -> None:
        stable_revision = self.s.stable_revision
        self.targets[self.stable_slot] = (self.replicas, stable_revision == self.revision)
        if self._ready(self.stable_slot, stable_revision) >= self.replicas:
            self.s.step_start_time = None
        elif self.s.step_start_time:
            left = self.spec.progress_deadline_seconds - since(self.s.step_start_time, self.now)
            self.deadline_exceeded = left <= 0
            if left > 0:
                self._due_in(left)

    def _previous(self) -> None:
        previous = self.s.previous
        if not previous:
            return
        left = (parse(previous.scale_down_at) - self.now).total_seconds()
        if self.s.post_promotion_run and previous.slot != self.stable_slot:
            # The revert target, warm with what it runs: never scaled back up for the bake.
            running = self.obs.slots[previous.slot].replicas
            self.targets[previous.slot] = (min(running, self.replicas), False)
            return
        if left <= 0 and self.routed and not self.obs.traffic.settled(self._traffic()):
            # The routers have not read back the plan that took traffic off it: it keeps
            # its pods until they have (a router that lags or fails is never a reason to
            # leave requests without a version to serve them).
            running = self.obs.slots[previous.slot].replicas
            self.targets[previous.slot] = (min(running, self.replicas), False)
            self.waiting_for = self.waiting_for or "routers to verify before the scale-down"
            self._due_in(VERIFY_POLL_SECONDS)
        elif left <= 0 or previous.slot == self.stable_slot:
            self.s.previous = None
            self._event("ScaledDown", f"previous revision {previous.revision} scaled to zero")
        else:
            # Warm means what is running stays running: it is never scaled back up.
            running = self.obs.slots[previous.slot].replicas
            self.targets[previous.slot] = (min(running, self.replicas), False)
            self._due_in(left)

    def _steps(self) -> None:
        s, spec, replicas = self.s, self.spec, self.replicas
        steps = spec.strategy.canary.steps
        paused = spec.paused or s.user_paused
        ready = self._ready(self.canary_slot, self.revision)
        index: int = s.current_step_index or 0
        if self._analysis_aborts(index):
            return
        if s.gradual_rollback is not None:
            rollback.walk(self, paused)  # guarded by the analysis above, like the steps
            return
        paused = paused or self.held is not None
        if index == 0 and not hooks.allow_start(self):
            self.targets[self.canary_slot] = (0, True)  # no pod before it is allowed
            self.targets[self.stable_slot] = (replicas, False)
            return
        for _ in range(len(steps) + 2):
            if index >= len(steps):
                confirmed = hooks.allow(self, "confirm-promotion") is Progress.DONE
                if ready >= replicas and not paused and confirmed:
                    self._promote()
                    self._steady()
                    return
                self._wait_for_canary(replicas, ready, paused or not confirmed, index)
                break
            step = steps[index]
            progress = kind_of(step).advance(self, step, index, paused)
            if progress is Progress.ABORTED:
                return
            if progress is Progress.WAIT or paused or self.held is not None:
                break
            progress = hooks.allow(self, "rollout", index)  # the step counts once they agree
            if progress is Progress.ABORTED:
                return
            if progress is Progress.WAIT:
                break
            index += 1
            s.current_step_index = index
            s.pause_start_time = None
            s.step_start_time = fmt(self.now)
            self._event("StepReached", describe_step(spec, index))

        if s.abort:
            return  # the progress deadline aborted it: _aborted() set the targets
        if self._background_due(index):
            # Reached startingStep in this decision: start it now, judge it next time.
            self._run_gate(
                run_name(self.inp.name, self.revision, s.attempt, "background"), "background"
            )
        self._size_slots(index, ready)

    def _size_slots(self, index: int, ready: int) -> None:
        s, replicas, steps = self.s, self.replicas, self.spec.strategy.canary.steps
        canary, stable = self.canary_slot, self.stable_slot
        self.targets[canary] = (self._canary_needed(index), True)
        if self.routed:
            # The router splits traffic: the stable keeps its pods unless told to shrink
            # with its share, and then never below what the weight in force needs.
            keep = rep.stable_floor(replicas, s.canary_weight)
            self.targets[stable] = (keep if self.dynamic else replicas, False)
            return
        goal = goal_weight(self.spec, index)
        # Canary pods replace stable ones only while the canary takes traffic: a Ready
        # canary at weight 0 serves nobody, so the stable may not shrink for it.
        serving = ready if s.canary_weight > 0 else 0
        self.targets[stable] = (rep.stable_target(replicas, min(goal, 100), serving), False)
        if index >= len(steps):
            last = goal_weight(self.spec, index - 1) if steps else 0
            self.targets[stable] = (rep.stable_target(replicas, last, serving), False)

    def _canary_needed(self, index: int) -> int:
        """Canary pods at step `index`: its setCanaryScale, else sized to its weight."""
        replicas = self.replicas
        if index >= self._step_count():
            return replicas
        scale = canary_scale(self.spec, index) if self.routed else None
        if scale is None:
            need = rep.canary_replicas(replicas, goal_weight(self.spec, index))
            return max(need, 1) if self._routes(index + 1) else need
        if scale.replicas is not None:
            return scale.replicas
        return rep.canary_replicas(replicas, scale.weight or 0)

    def canary_has_pods(self, index: int, paused: bool) -> bool:
        """Are the pods step `index` needs Ready (at least one)? Else wait, up to the deadline."""
        need = max(self._canary_needed(index), 1)
        ready = self._ready(self.canary_slot, self.revision)
        if ready >= need:
            return True
        self._wait_for_canary(need, ready, paused, index)
        return False

    def traffic_at(self, index: int, weight: int, routes_through: int) -> bool:
        """Ask the routers for `weight` and the header routes of steps before `routes_through`;
        True once every router has verified it (only then does the step count)."""
        plan = self._plan(weight, routes_through)
        self.wanted_plan = plan
        if self.obs.traffic.settled(plan):
            return True
        if self.obs.traffic.problem is None:
            self.waiting_for = f"routers to verify weight {weight}"
            self._due_in(VERIFY_POLL_SECONDS)
        return False

    def _routes(self, routes_through: int) -> tuple[HeaderRoute, ...]:
        """Header routes set by steps before `routes_through`, in managedRoutes order."""
        live: dict[str, HeaderRoute] = {}
        for step in self.spec.strategy.canary.steps[:routes_through]:
            route = step.set_header_route
            if route is None:
                continue
            if route.match:
                live[route.name] = HeaderRoute(route.name, tuple(route.match))
            else:
                live.pop(route.name, None)
        routing = self.spec.strategy.traffic_routing()
        order = [r.name for r in (routing.managed_routes or [])] if routing else []
        return tuple(live[name] for name in order if name in live)

    def _plan(self, weight: int, routes_through: int) -> TrafficPlan:
        routes = self._routes(routes_through)
        takes = weight > 0 or bool(routes)
        return TrafficPlan(
            stable_slot=self.stable_slot,
            canary_slot=self.canary_slot if takes else None,
            canary_weight=weight,
            header_routes=routes,
        )

    # ------------------------------------------------------------ analysis

    def _run_gate(self, name: str, kind: str, step: int | None = None) -> Gate:
        """The verdict of run `name`, creating it first when it does not exist yet."""
        run = self.obs.runs.get(name)
        if run is None and name not in self.wanted_runs:
            self.actions.append(
                CreateRun(name, kind, self.s.canary_revision or self.revision, step)
            )
            self._event("AnalysisStarted", f"{kind} analysis run {name} started")
        self.wanted_runs.add(name)
        return gate(name, run, self.s.acknowledged_runs)

    def _analysis_aborts(self, index: int) -> bool:
        """Alerts and background analysis: abort now (True), or hold the steps (self.held)."""
        verdict = alert_gate(
            self.obs.runs, alert_run_prefix(self.inp.name, self.revision, self.s.attempt)
        )
        if verdict is PASS and self._background_due(index):
            name = run_name(self.inp.name, self.revision, self.s.attempt, "background")
            verdict = self._run_gate(name, "background")
        if verdict.verdict == "abort":
            self._abort(verdict.reason, verdict.message)
            self._aborted()
            return True
        if verdict.verdict == "pause":
            self.held = verdict
        return False

    def _background_due(self, index: int) -> bool:
        """From startingStep on, once the canary takes traffic: before that there is nothing
        to measure, and "no data" would only make the analysis inconclusive."""
        background = self.spec.strategy.canary.analysis
        return (
            background is not None
            and index >= background.starting_step
            and self.s.canary_weight > 0
        )

    def _acknowledge_held_runs(self, revision: str | None = None) -> None:
        """A promote past an inconclusive (or paused-on-error) run accepts it."""
        revision = revision or self.revision
        held = [
            name
            for name, run in self.obs.runs.items()
            if run.revision == revision and run.phase in ("Inconclusive", "Error", "Holding")
        ]
        self.s.acknowledged_runs = sorted({*self.s.acknowledged_runs, *held})

    def _post_promotion(self) -> None:
        """Bake after promotion: the previous version stays warm until the run passes."""
        s = self.s
        name = s.post_promotion_run or ""
        verdict = alert_gate(
            self.obs.runs, alert_run_prefix(self.inp.name, s.stable_revision, s.attempt)
        )
        if verdict is PASS:
            self.wanted_runs.add(name)
            run = self.obs.runs.get(name)
            if run is None:
                self.actions.append(CreateRun(name, "postPromotion", s.stable_revision))
                self._event("AnalysisStarted", f"post-promotion analysis run {name} started")
            verdict = gate(name, run, s.acknowledged_runs)
        if verdict.verdict == "pass":
            s.post_promotion_run = None
            if s.previous:
                delay = self.spec.strategy.scale_down_delay()
                until = self.now + timedelta(seconds=delay)
                s.previous = s.previous.model_copy(update={"scale_down_at": fmt(until)})
            self._event("AnalysisPassed", f"post-promotion analysis run {name} passed")
        elif verdict.verdict == "pause":
            self.held = verdict
        elif verdict.verdict == "abort":
            self._revert_promotion(verdict)

    def _failed_bake_first(self) -> None:
        """A failed bake that arrives together with a new template still reverts first."""
        s = self.s
        name = s.post_promotion_run
        if not name or self.revision == s.stable_revision:
            return
        verdict = gate(name, self.obs.runs.get(name), s.acknowledged_runs)
        if verdict.verdict == "abort":
            self._revert_promotion(verdict)

    def _revert_promotion(self, verdict: Gate) -> None:
        """The new stable failed its bake: traffic back to the warm previous version at once."""
        s = self.s
        previous = s.previous
        bad, bad_slot = s.stable_revision, self.stable_slot
        if not previous:
            self._event(
                "AnalysisFailed", f"{verdict.message}; no previous version is warm", warning=True
            )
            s.post_promotion_run = None
            return
        s.stable_slot = previous.slot
        s.stable_revision = previous.revision
        s.previous = None
        s.post_promotion_run = None
        s.canary_revision = bad
        s.current_step_index = self._step_count()
        s.canary_weight = 0
        self._abort(verdict.reason, f"{verdict.message}; reverted to {previous.revision}")
        self.targets = {self.stable_slot: (self.replicas, False)}
        self.targets[bad_slot] = (self.obs.slots[bad_slot].replicas, False)
        self._due_in(self.spec.strategy.abort_scale_down_delay())
        if self._stable_not_back():
            self.abort_hold = True  # _aborted() lets traffic go once it has its pods
            self.waiting_for = f"stable {previous.revision} Ready before traffic returns"

    def _prune_runs(self) -> None:
        """Finished runs of attempts older than revisionHistoryLimit go; the rest stay to read."""
        oldest = self.s.attempt - self.spec.revision_history_limit
        for name, run in sorted(self.obs.runs.items()):
            if (
                run.attempt is not None
                and run.attempt < oldest
                and run.phase not in LIVE
                and name not in self.wanted_runs
                and name != self.s.post_promotion_run
            ):
                self.actions.append(DeleteRun(name))

    def _stop_unwanted_runs(self) -> None:
        # Asked for earlier in this decision, then ended by it (a promotion, an abort): the
        # run would only be started to be stopped, so it is not started at all.
        for act in [a for a in self.actions if isinstance(a, CreateRun)]:
            if act.name not in self.wanted_runs:
                self.actions.remove(act)
                self.events = [
                    e
                    for e in self.events
                    if not (e.reason == "AnalysisStarted" and act.name in e.message.split())
                ]
        for name, run in sorted(self.obs.runs.items()):
            if (
                run.kind != "alert"
                and run.phase in LIVE
                and not run.terminating
                and name not in self.wanted_runs
            ):
                self.actions.append(TerminateRun(name))

    def _hold_deadline_while_paused(self) -> None:
        """The progress deadline does not run while a human holds the rollout."""
        s = self.s
        paused = self.spec.paused or s.user_paused
        if paused and not s.paused_at:
            s.paused_at = fmt(self.now)
        elif not paused and s.paused_at:
            s.paused_at = None
            if s.step_start_time:
                s.step_start_time = fmt(self.now)

    def _wait_for_canary(self, want: int, ready: int, paused: bool, index: int) -> None:
        if paused:
            return
        deadline = self.spec.progress_deadline_seconds
        left = deadline - since(self.s.step_start_time, self.now)
        if left > 0:
            self._due_in(left)
            return
        self._abort(
            "ProgressDeadlineExceeded",
            f"canary {self.revision} had {ready}/{want} pods ready after {deadline}s at "
            f"{describe_step(self.spec, index)}",
        )
        self._aborted()

    def _promote(self) -> None:
        s = self.s
        left, left_revision = self.stable_slot, s.stable_revision
        steps = self._step_count()
        s.stable_slot = self.canary_slot
        s.stable_revision = self.revision
        self.wanted_runs.clear()  # the canary's analysis ends with it
        self.wanted_plan = None
        self.waiting_for = ""
        post = self.spec.strategy.post_promotion() is not None
        s.previous = self._warm(left, left_revision, keep=post)
        self._clear_canary()
        if post:
            s.post_promotion_run = run_name(
                self.inp.name, self.revision, s.attempt, "postPromotion"
            )
        kept = ""
        if s.previous:
            running = min(self.obs.slots[left].replicas, self.replicas)
            until = "until post-promotion analysis passes, then " if post else ""
            kept = (
                f"; {left_revision} kept warm with {running} pods {until}for "
                f"{self.spec.strategy.scale_down_delay()}s"
                if running
                else f"; {left_revision} had no pods left to keep warm"
            )
        how = ": the active Service selects it" if self.blue_green else f" after {steps} steps"
        self._event("Completed", f"canary {self.revision} promoted to stable{how}{kept}")

    # ------------------------------------------------------------ output

    def _traffic(self) -> TrafficPlan:
        s = self.s
        if self.wanted_plan is not None:
            return self.wanted_plan
        if s.canary_revision and s.abort and self.abort_hold:
            # dynamicStableScale: traffic returns once the stable is back at full size.
            return self.obs.traffic.plan or self._plan(s.canary_weight, 0)
        if not s.canary_revision or s.abort:
            return self._plan(0, 0)
        return self._plan(s.canary_weight, s.current_step_index or 0)

    def _plan_actions(self) -> None:
        for slot in SLOTS:
            seen = self.obs.slots[slot]
            replicas, deploy = self.targets.get(slot, (0, False))
            if deploy and (not seen.exists or seen.revision != self.revision):
                self.actions.append(DeploySlot(slot, self.revision, replicas))
            elif deploy and seen.drifted:
                self.actions.append(DeploySlot(slot, self.revision, replicas))
                self._event(
                    "DriftReverted",
                    f"Deployment of slot {slot} was edited by hand ({seen.drifted}); Sluice "
                    "wrote the Rollout's template back",
                    warning=True,
                )
            elif seen.exists and seen.replicas != replicas:
                self.actions.append(ScaleSlot(slot, replicas))
        plan, traffic = self._traffic(), self.obs.traffic
        if traffic.plan != plan or not traffic.verified:
            # The plan it asked for, no longer in the live objects: someone edited them.
            drifted = traffic.plan == plan and traffic.problem is None
            self.actions.append(SetTraffic(plan, restore=drifted))

    def _phase(self) -> tuple[Phase, str, str]:
        """(phase, reason, message) for status and conditions."""
        s, spec = self.s, self.spec
        if s.abort:
            abort, problem = s.abort, self.obs.traffic.problem
            note = f"; router problem: {problem}" if problem else ""
            if self.waiting_for:
                note += f"; waiting for {self.waiting_for}"
            return "Degraded", abort.reason, f"aborted: {abort.message}{note}"
        if s.canary_revision and self.replacing:
            stable_ready = self._ready(self.stable_slot, s.stable_revision)
            return (
                "Progressing",
                "CanaryReplacing",
                f"new template {self.revision} replaces canary {s.canary_revision} once "
                f"stable {s.stable_revision} is back to {self.replicas} ready "
                f"({stable_ready} now)",
            )
        if s.canary_revision:
            where = describe_step(spec, s.current_step_index or 0)
            ready = self._ready(self.canary_slot, self.revision)
            if self.blue_green:  # no weight: the preview waits for the switch
                detail = f"{where}; preview {ready} ready"
            else:
                detail = f"{where}; canary {ready} ready, weight {s.canary_weight}"
            if spec.paused or s.user_paused:
                by = "spec.paused" if spec.paused else "annotation"
                return "Paused", "PausedByUser", f"paused by {by} at {detail}"
            if self.held is not None:
                return "Paused", self.held.reason, f"{self.held.message} ({detail})"
            if self.obs.traffic.problem:
                return "Paused", "TrafficRouterProblem", f"{self.obs.traffic.problem} ({detail})"
            if self.waiting_for:
                detail += f"; waiting for {self.waiting_for}"
            index = s.current_step_index or 0
            steps = spec.strategy.canary.steps
            if index < len(steps) and steps[index].pause is not None:
                return "Paused", "PauseStep", detail
            return "Progressing", "StepInProgress", detail
        ready = self._ready(self.stable_slot, s.stable_revision)
        if self.held is not None:
            return "Paused", self.held.reason, self.held.message
        if s.post_promotion_run:
            return (
                "Progressing",
                "PostPromotionAnalysis",
                f"stable {s.stable_revision} ({ready}/{self.replicas} ready) under "
                f"post-promotion analysis {s.post_promotion_run}; previous kept warm",
            )
        if ready >= self.replicas:
            note = ""
            if self.obs.traffic.problem:  # serving, but the next canary could not start
                note = f"; router problem: {self.obs.traffic.problem}"
                if self.obs.traffic.problem not in self.old.message:
                    self._event("TrafficRouterProblem", self.obs.traffic.problem, warning=True)
            return (
                "Healthy",
                "Healthy",
                f"stable {s.stable_revision}: {ready}/{self.replicas} ready{note}",
            )
        if self.deadline_exceeded:
            return (
                "Degraded",
                "ProgressDeadlineExceeded",
                f"stable {s.stable_revision}: {ready}/{self.replicas} ready after "
                f"{spec.progress_deadline_seconds}s",
            )
        return (
            "Progressing",
            "Scaling",
            f"stable {s.stable_revision}: {ready}/{self.replicas} ready",
        )

    def _slot_status(self, slot: Slot, revision: str) -> SlotStatus:
        replicas = self.targets.get(slot, (0, False))[0]
        return SlotStatus(
            slot=slot,
            revision=revision,
            replicas=replicas,
            ready_replicas=self._ready(slot, revision),
        )

    def _hold_pods_under_traffic(self) -> None:
        """With a router, no slot goes to 0 pods before every router has verified the plan
        that takes traffic off it (an abort, a promotion, a template set back): a router
        that lags or cannot be written may still send that slot requests."""
        if not self.routed or self.obs.traffic.settled(self._traffic()):
            return
        for slot in SLOTS:
            seen = self.obs.slots[slot]
            replicas, deploy = self.targets.get(slot, (0, False))
            if replicas == 0 and not deploy and seen.exists and seen.replicas > 0:
                self.targets[slot] = (seen.replicas, False)
                self.waiting_for = self.waiting_for or "routers to verify before the scale-down"
                self._due_in(VERIFY_POLL_SECONDS)

    def _finish(self) -> Decision:
        s = self.s
        self._hold_pods_under_traffic()
        self._plan_actions()
        phase, reason, message = self._phase()
        message = clip(message)
        s.phase = phase
        s.message = message
        s.stable = self._slot_status(self.stable_slot, s.stable_revision)
        s.canary = (
            self._slot_status(self.canary_slot, s.canary_revision) if s.canary_revision else None
        )
        self.actions += baseline_actions(s, self.obs)  # sized like the canary just decided
        # The serving slots only: a warm previous version takes no traffic.
        serving = [(self.stable_slot, s.stable_revision)]
        if s.canary_revision:
            serving.append((self.canary_slot, s.canary_revision))
        s.replicas = sum(self.obs.slots[slot].pods for slot, _ in serving)
        s.ready_replicas = sum(self._ready(slot, revision) for slot, revision in serving)
        truth = {
            "Progressing": phase == "Progressing",
            "Paused": phase == "Paused",
            "Completed": phase == "Healthy",
            "Healthy": phase == "Healthy",
            "Degraded": phase == "Degraded",
            "InvalidSpec": False,
        }
        old_reason = next((c.reason for c in self.old.conditions if c.type == self.old.phase), "")
        self._conditions(truth, reason, message)
        # A new phase, or the same phase for a new reason (a pause step that turns into an
        # inconclusive analysis), is worth an Event when nothing else said so.
        if (phase, reason) != (self.old.phase, old_reason) and (
            not self.events or reason == "TrafficRouterProblem"  # always worth a Warning
        ):
            self._event(
                reason if reason == "TrafficRouterProblem" else phase,
                message,
                warning=phase == "Degraded" or "Analysis" in reason or "Traffic" in reason,
            )
        stable_ready = self._ready(self.stable_slot, s.stable_revision)
        scale = scale_workload(self.replicas, s, stable_ready, self.obs.workload)
        if scale is not None:
            self.actions.append(scale)
        return self._decision()

    def _invalid(self, message: str) -> Decision:
        s, message = self.s, clip(message)
        was = next((c for c in self.old.conditions if c.type == "InvalidSpec"), None)
        if was is None or was.status != "True" or was.message != message:
            self._event("InvalidSpec", message, warning=True)
        # The spec was read, and refused: say so for this generation (GitOps health checks).
        s.phase = "Degraded"
        s.message = f"invalid spec: {message}"
        s.observed_generation = self.inp.generation
        truth = {t: False for t in CONDITION_TYPES}
        truth.update(Degraded=True, InvalidSpec=True)
        self._conditions(truth, "InvalidSpec", message)
        return self._decision()

    def _conditions(self, truth: dict[str, bool], reason: str, message: str) -> None:
        before: dict[str, Condition] = {c.type: c for c in self.old.conditions}
        out = []
        for kind in CONDITION_TYPES:
            status = "True" if truth[kind] else "False"
            prior = before.get(kind)
            changed = prior is None or prior.status != status
            stamp = (
                fmt_seconds(self.now) if changed or prior is None else prior.last_transition_time
            )
            out.append(
                Condition(
                    type=kind,
                    status=status,
                    reason=reason if truth[kind] else "",
                    message=message if truth[kind] else "",
                    last_transition_time=stamp,
                )
            )
        self.s.conditions = out

    def _decision(self) -> Decision:
        status = self.s
        if len(self.events) > EVENT_LIMIT:  # e.g. a template change that skips many steps
            kept, rest = self.events[: EVENT_LIMIT - 1], self.events[EVENT_LIMIT - 1 :]
            reasons = sorted({e.reason for e in rest})
            summary = f"{len(rest)} more: {', '.join(reasons)}; the last: {rest[-1].message}"
            self.events = [*kept, EventNote(rest[-1].reason, clip(summary), rest[-1].type)]
        return Decision(
            status=status,
            actions=self.actions,
            events=self.events,
            requeue_after=min(self.due) if self.due else None,
            status_changed=status != self.old,
        )
