"""Observe from the cache, let the engine decide, apply, write status: one Rollout at a time."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from sluice import logs
from sluice import telemetry as M
from sluice.alerts import AlertAbort
from sluice.api.analysis import AnalysisRunStatus, Measurement, MetricResult
from sluice.api.rollout import ACTION_ANNOTATION, GROUP, VERSION, RolloutSpec, RolloutStatus
from sluice.cluster import api_wait
from sluice.cluster import children as C
from sluice.cluster import labels as L
from sluice.cluster.analysis_runs import (
    AnalysisInvalid,
    analysis_for,
    judge_score_of,
    manifest,
    merge,
)
from sluice.cluster.configs import references
from sluice.cluster.events import event_body, event_name, transition_key
from sluice.cluster.jobs import job_manifest
from sluice.cluster.kube import Kube
from sluice.cluster.observe import observe
from sluice.cluster.wire import strip_empty
from sluice.controller import shard
from sluice.controller.cache import Body, Cache, Key
from sluice.controller.configs import Configs
from sluice.controller.webhooks import HookCaller
from sluice.controller.workloads import Workloads
from sluice.controller.workqueue import WorkQueue
from sluice.engine import (
    CreateRun,
    Decision,
    DeleteRun,
    DeploySlot,
    EventNote,
    RemoveAction,
    RolloutInput,
    ScaleSlot,
    SetTraffic,
    TerminateRun,
    decide,
)
from sluice.engine.gates import alert_run_prefix
from sluice.engine.hashing import template_hash
from sluice.engine.timefmt import fmt
from sluice.engine.types import (
    AskHook,
    CreateJob,
    DeleteJob,
    RemoveBaseline,
    ScaleWorkload,
    SetBaseline,
    TrafficObserved,
    WorkloadObserved,
)
from sluice.engine.validate import InvalidSpec, parse_spec, with_name
from sluice.routers import applied as A
from sluice.routers.base import ObjectRef, RouteContext, RouterProblem
from sluice.routers.factory import routers as build_routers
from sluice.routers.services import ServiceRouter, mark_named, unmark_named
from sluice.routers.set import PartlyApplied, RouterSet

log = logs.get("sluice.reconciler")
FINALIZER = f"{GROUP}/traffic-release"  # only while a router edits objects the user owns
PROBLEM_RETRY_SECONDS = 10.0  # a router object missing or foreign: look again this often
REJECTED_RETRY_SECONDS = 30.0  # a refused write or a child's name taken: try again this often


class Conflict(Exception):
    """The cache was behind the API server; the watch brings the news, try again soon."""


class Rejected(Exception):
    """The API server refused a Deployment built from the spec's template."""

    def __init__(self, subject: str, message: str) -> None:
        super().__init__(message)
        self.subject = subject  # a template revision or an AnalysisRun name


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _status(body: Body) -> RolloutStatus:
    try:
        return RolloutStatus.model_validate(body.get("status") or {})
    except ValidationError:
        log.warning(
            "status unreadable; starting from an empty one", rollout=body["metadata"]["name"]
        )
        return RolloutStatus()


def _owned(body: Body, uid: str) -> bool:
    return any(o.get("uid") == uid for o in body["metadata"].get("ownerReferences") or [])


class Controller:
    def __init__(
        self,
        kube: Kube,
        workers: int = 8,
        clock: Callable[[], datetime] = _utcnow,
        instance: str | None = None,
        track_secrets: bool = False,
    ) -> None:
        self.kube = kube
        self.instance = instance
        self.cache = Cache()
        self.workloads = Workloads(kube, instance)  # the users' Deployments that workloadRefs name
        self.configs = Configs(kube, secrets=track_secrets)  # trackConfig's ConfigMaps/Secrets
        self.queue: WorkQueue[Key] = WorkQueue()
        self.traffic_problems: dict[Key, str] = {}  # a router's apply refused, until it works
        self.claim_problems: dict[Key, str] = {}  # a route another Rollout holds: never written
        self.conflicts: dict[Key, int] = {}  # consecutive conflicts, for their backoff
        self.claims: dict[tuple[str, str], set[Key]] = {}  # (namespace, route) -> claimants
        self.claimed: dict[Key, set[str]] = {}
        # (namespace, "Ingress web") -> the claims on it, whole or by host rule (_rivals)
        self.ingress_claims: dict[tuple[str, str], set[str]] = {}
        self.workers = workers
        self.clock = clock
        self.failures: dict[Key, int] = {}
        self.rejected: dict[Key, dict[str, str]] = {}  # revision -> the API server's refusal
        # When a refusal is tried again, and of which generation: until then (or a new
        # spec) it is said again from here, not re-earned by each child's watch event.
        self.refused_until: dict[Key, tuple[datetime, int]] = {}
        # (namespace, rollout, revision) -> baseline flag: a new canary's analyses, checked
        # once before its actions and read by the Deployment write of the same reconcile
        self.checked: dict[tuple[str, str, str], str] = {}
        self.last_error: dict[Key, str] = {}
        self.adopted: set[Key] = set()  # children looked for once (shard.adopt_children)
        # The analysis executor: a run it should measure (created, or its Rollout just cached)
        self.on_run_created: Callable[[Body], None] | None = None
        self.on_event: Callable[[Body, Any, datetime], None] | None = None  # notify, metrics
        self.tasks: list[asyncio.Task[None]] = []
        self.started = False
        self.hooks = HookCaller(self.queue.add, self.queue.add_after, clock=clock)

    # ------------------------------------------------------------ watch events

    def mine(self, body: Body) -> bool:
        """Is this Rollout in this operator's shard (its sluice.dev/controller-instance)?"""
        return (body["metadata"].get("labels") or {}).get(L.INSTANCE) == self.instance

    def rollout_event(self, kind: str | None, body: Body) -> None:
        key: Key = (body["metadata"]["namespace"], body["metadata"]["name"])
        if kind != "DELETED" and not self.mine(body):
            # Another shard's (or relabelled away): forgotten as if deleted, so that one
            # Rollout is never acted on by two operators.
            kind = "DELETED" if key in self.cache.rollouts else None
            if kind is None:
                return
        if kind == "DELETED":
            self.cache.drop_rollout(key)
            self.queue.forget(key)
            self.failures.pop(key, None)
            self.rejected.pop(key, None)
            self.refused_until.pop(key, None)
            self.last_error.pop(key, None)
            self.traffic_problems.pop(key, None)
            self.claim_problems.pop(key, None)
            self.conflicts.pop(key, None)
            self.adopted.discard(key)
            self.hooks.forget(key)
            self.configs.forget(key)
            for other in self._claim(key, set()):
                self.queue.add(other)  # the route it held is free now
            M.forget_rollout(*key)
        else:
            first = key not in self.cache.rollouts
            if self.cache.put_rollout(body):
                self.queue.add(key)
            if first:
                self._runs_to_executor(key)
        M.ROLLOUTS.set(len(self.cache.rollouts))

    def _runs_to_executor(self, key: Key) -> None:
        """The executor measures a run only once its Rollout is cached; after a restart the
        runs' watch may deliver a Running run before the Rollouts' watch delivers its owner,
        and nothing else would hand it over again (the Rollout then waited on it forever)."""
        if self.on_run_created is None:
            return
        for name, body in sorted(self.cache.children.get(key, {}).items()):
            if name.startswith("AnalysisRun/"):
                self.on_run_created(body)

    def child_event(self, kind: str | None, body: Body) -> None:
        key = self.cache.put_child(body, deleted=kind == "DELETED")
        if key is not None and key in self.cache.rollouts:
            self.queue.add(key)

    def workload_event(self, kind: str | None, body: Body) -> None:
        """A Deployment a workloadRef names changed (its template, or its Ready pods)."""
        key = self.workloads.event(kind, body)
        if key is not None and key in self.cache.rollouts:
            self.queue.add(key)

    def config_event(self, kind: str, etype: str | None, body: Body) -> None:
        """A tracked ConfigMap/Secret changed: the Rollouts reading it roll the new content."""
        for key in self.configs.event(kind, etype, body):
            if key in self.cache.rollouts:
                self.queue.add(key)

    def object_event(self, kind: str | None, body: Body) -> None:
        """A router object of the user's changed: wake the Rollouts that name it."""
        for key in self.cache.put_object(body, deleted=kind == "DELETED"):
            self.queue.add(key)

    def _cache_written(self, body: Body) -> None:
        if (body.get("metadata", {}).get("labels") or {}).get(L.ROLLOUT):
            self.cache.put_child(body)
        else:
            self.cache.put_object(body)

    # ------------------------------------------------------------ running

    async def warm(self, namespaces: list[str] | None) -> None:
        """Fill the children cache before the first decision, so none is taken blind."""
        for kind in ("deployments", "services", "analysisruns", "jobs"):
            # What the watches select: this shard's children (Jobs are not sharded)
            selector = L.ROLLOUT if kind == "jobs" else L.in_shard(L.ROLLOUT, self.instance)
            try:
                async for page in self.kube.list_children(kind, namespaces, selector):
                    for body in page:
                        if (body["metadata"].get("labels") or {}).get(L.WORKLOAD):
                            self.workloads.put(body)  # a user's Deployment a workloadRef names
                        else:
                            self.cache.put_child(body)
            except ApiException as exc:
                if exc.status != 404 or kind != "analysisruns":
                    raise
                log.error(
                    "the AnalysisRun CRD is not installed: analysis cannot run "
                    "(kubectl apply -f crds/)",
                    crd=f"analysisruns.{GROUP}",
                )
        # Tracked configs too: a revision computed without them would start a false canary.
        for kind in self.configs.kinds():
            plural = f"{kind.lower()}s"
            async for page in self.kube.list_children(plural, namespaces, L.TRACK_CONFIG):
                for body in page:
                    self.configs.put(kind, body)

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self.queue.run_timers(), name="sluice-timers")]
        self.tasks += [
            asyncio.create_task(self._worker(), name=f"sluice-worker-{i}")
            for i in range(self.workers)
        ]
        self.started = True

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.hooks.stop()
        self.started = False

    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            M.QUEUE_DEPTH.set(len(self.queue))
            started = time.perf_counter()
            waited = api_wait.begin()
            try:
                await self.reconcile(key)
                self.failures.pop(key, None)
                self.last_error.pop(key, None)
                self.conflicts.pop(key, None)
                M.RECONCILES.labels("ok").inc()
            except Conflict:
                M.RECONCILES.labels("conflict").inc()
                # The watch brings the news at once; a conflict that persists backs off.
                count = self.conflicts.get(key, 0) + 1
                self.conflicts[key] = count
                self.queue.add_after(key, min(0.2 * 2 ** (count - 1), 30.0))
            except Rejected as exc:
                M.RECONCILES.labels("rejected").inc()
                self.refuse(key, exc)
                self.queue.add(key)  # the engine reports it as InvalidSpec
            except Exception as exc:
                M.RECONCILES.labels("error").inc()
                count = self.failures.get(key, 0) + 1
                self.failures[key] = count
                delay = min(0.5 * 2**count, 60.0)
                if isinstance(exc, ApiException):
                    exc = RuntimeError(f"{exc.status} {exc.reason}: {_api_message(exc)}")
                log.warning(
                    "reconcile failed; retrying",
                    namespace=key[0],
                    rollout=key[1],
                    error=str(exc)[:500],
                    retry_in=delay,
                )
                self.queue.add_after(key, delay)
                await self._report_error(key, str(exc))
            finally:
                took = time.perf_counter() - started
                M.RECONCILE_SECONDS.observe(took)
                M.RECONCILE_OWN_SECONDS.observe(max(took - waited.total, 0.0))
                M.SCHEDULED.set(self.queue.scheduled)
                self.queue.done(key)

    # ------------------------------------------------------------ one Rollout

    async def reconcile(self, key: Key) -> Decision | None:
        # This pass decides the next wake-up afresh from the status (the engine computes it
        # every time): one set by an earlier pass, such as the progress deadline of a canary
        # that has long become Healthy, would only wake an idle Rollout for nothing.
        self.queue.cancel_timer(key)
        body = self.cache.rollouts.get(key)
        if body is None:
            return None
        meta = body["metadata"]
        uid = meta["uid"]
        bucket = {k: v for k, v in self.cache.children.get(key, {}).items() if _owned(v, uid)}
        if key not in self.adopted and shard.needs_adoption(body, len(bucket)):
            self.adopted.add(key)  # once: children deleted by hand are then made anew
            await shard.adopt_children(self.kube, self.cache, body, self.instance)
            bucket = {k: v for k, v in self.cache.children.get(key, {}).items() if _owned(v, uid)}
        raw_spec, workload, missing = await self.workloads.resolve(
            key, body.get("spec") or {}, adopt=not meta.get("deletionTimestamp")
        )
        raw_spec, config_missing = await self.configs.resolve(
            key, raw_spec, adopt=not meta.get("deletionTimestamp")
        )
        if config_missing:
            self.queue.add_after(key, REJECTED_RETRY_SECONDS)  # its creation reaches no watch
        spec: RolloutSpec | None
        try:
            spec = parse_spec(raw_spec)
        except InvalidSpec:
            spec = None  # the engine says why; nothing is touched
        routers = build_routers(self.kube, spec) if spec else None
        ctx = await self._route_context(key, body, spec, bucket, routers)
        if meta.get("deletionTimestamp"):
            await self._finalize(body, ctx, routers, workload)
            return None
        traffic = TrafficObserved()
        gives_back = workload is not None and workload.scale_down != "never"
        if gives_back and FINALIZER not in (meta.get("finalizers") or []):
            body = await self._set_finalizer(body, add=True)  # its pods come back first
        if ctx is not None and routers is not None:
            edits = routers.edits_user_objects or bool(routers.services.users(ctx))
            if edits and FINALIZER not in (meta.get("finalizers") or []):
                body = await self._set_finalizer(body, add=True)
            await self._release_dropped(ctx, routers)
            traffic = routers.observe(ctx)
            claims = set(routers.claims(ctx)) | set(routers.services.claims(ctx))
            claimed = self._claim_problem(key, claims, ctx.objects)
            if claimed:
                self.claim_problems[key] = claimed
            else:
                self.claim_problems.pop(key, None)
            problem = claimed or self.traffic_problems.get(key)
            if problem and (traffic.problem is None or claimed):
                traffic = TrafficObserved(traffic.plan, False, problem)
        status = _status(body)
        action = (meta.get("annotations") or {}).get(ACTION_ANNOTATION)
        inp = RolloutInput(
            name=meta["name"],
            namespace=meta["namespace"],
            generation=int(meta.get("generation", 0)),
            spec=raw_spec,
            status=status,
            action=action,
            # parsed once (the spec resolved before any write of this reconcile)
            parsed=with_name(spec, meta["name"]) if spec else None,
        )
        now = self.clock()
        rejected, retry_in = self.refusals(key, inp.generation, now)
        if missing:  # not a refusal of ours: the user's Deployment is not there (yet)
            rejected = {**rejected, "child:workload": missing}
        if rejected:
            # Said this once (InvalidSpec); tried again later, as the cause may lie outside
            # the Rollout: a template created since, a foreign object deleted since.
            self.queue.add_after(key, retry_in)
        template = spec.template if spec else None  # drift: the slot running it is compared
        revision = template_hash(template) if template is not None else ""
        seen = observe(meta["name"], bucket, traffic, rejected, revision, template)
        if workload is not None:
            seen = dataclasses.replace(seen, workload=workload)
        seen = dataclasses.replace(seen, hooks=self.hooks.observed(key, status.attempt))
        decision = decide(inp, seen, now)
        bound = log.bind(
            namespace=key[0],
            rollout=key[1],
            step=decision.status.current_step_index,
            revision=decision.status.canary_revision or decision.status.stable_revision,
        )
        if ctx is not None:
            await self._check_new_canary(ctx, decision)
        for act in decision.actions:
            if isinstance(act, AskHook) and spec is not None:
                self.hooks.ask(key, body, spec, act)  # off the reconcile path, once per interval
                continue
            if ctx is None or routers is None or isinstance(act, RemoveAction):
                continue
            bound.info("apply", action=type(act).__name__, **_fields(act))
            await self._apply(key, ctx, act, routers)
        # Events go before the status write, named after the decision: a kill between the
        # two leaves the Events posted, and the decision made again names them the same.
        start = transition_key(body)
        decided = {**body, "status": wire_status(decision.status)}  # what notifications read
        for note in decision.events:
            bound.info(note.message, reason=note.reason, type=note.type)
            M.count_event(key[0], key[1], note.reason, note.type)
            await self._post_event(body, note, now, event_name(body, note, start), decided)
        if decision.status_changed:
            await self._write_status(key, body, decision.status)
        if action is not None and any(isinstance(a, RemoveAction) for a in decision.actions):
            removed = await self.kube.remove_action(meta["namespace"], meta["name"], action)
            M.API_CALLS.labels("remove_action").inc()
            if removed is not None:
                self.cache.put_rollout(removed)
                self.queue.add(key)  # clears status.consumedAction
        st = decision.status
        M.set_rollout(key[0], key[1], st.phase, st.canary_weight, st.current_step_index)
        if decision.requeue_after is not None:
            self.queue.add_after(key, decision.requeue_after)
        return decision

    def refuse(self, key: Key, exc: Rejected) -> None:
        """Record a refusal; it stands until REJECTED_RETRY_SECONDS from the first one."""
        self.rejected.setdefault(key, {})[exc.subject] = str(exc)
        body = self.cache.rollouts.get(key)
        generation = int((body or {}).get("metadata", {}).get("generation", 0))
        if self.refused_until.get(key, (None, None))[1] != generation:
            retry = self.clock() + timedelta(seconds=REJECTED_RETRY_SECONDS)
            self.refused_until[key] = (retry, generation)

    def refusals(self, key: Key, generation: int, now: datetime) -> tuple[dict[str, str], float]:
        """The refusals that still stand, and the seconds until they are tried again. They
        go when due or when the spec changed (its generation): a watch event of a child
        in between (the stable's pods) does not make one more attempt, template reads and
        all, before the refusal is said again."""
        until, of = self.refused_until.get(key, (now, generation))
        if now >= until or of != generation:
            self.rejected.pop(key, None)
            self.refused_until.pop(key, None)
            return {}, REJECTED_RETRY_SECONDS
        return dict(self.rejected.get(key) or {}), max((until - now).total_seconds(), 0.1)

    async def _route_context(
        self,
        key: Key,
        body: Body,
        spec: RolloutSpec | None,
        bucket: dict[str, Body],
        routers: RouterSet | None,
    ) -> RouteContext | None:
        """The routers' view: owned children plus the user's objects the Rollout names.
        A named object the watch has not brought (yet) is read once, then watched."""
        if spec is None or routers is None:
            return None
        refs = [r for r in routers.watched(RouteContext(body, spec, bucket)) if not r.owned]
        names = {r.key for r in refs}
        released = self.cache.unnamed(key, names)  # a name changed: the old one let go
        missing = set(self.cache.name_objects(key, names))
        await unmark_named(self.kube, key[0], released)
        for ref in refs:
            if ref.key in missing:
                M.API_CALLS.labels("get_router_object").inc()
                found = await self._get_object(ref, key[0])
                deleting = bool(body["metadata"].get("deletionTimestamp"))
                if found is not None and ref.kind == "Service" and not deleting:
                    # (a Rollout going unlabels them: never labelled again on its way out)
                    found = await mark_named(self.kube, key[0], found, self.instance)
                if found is not None:
                    self.cache.put_object(found)
                elif ref.kind == "Service":
                    # Services are selected on the server by label: the creation of this
                    # one (the user's, unlabelled) reaches no watch, so look again.
                    self.queue.add_after(key, PROBLEM_RETRY_SECONDS)
        return RouteContext(body, spec, bucket, self.cache.objects_of(key))

    async def _get_object(self, ref: ObjectRef, namespace: str) -> Body | None:
        try:
            return await self.kube.get_object(ref, namespace)
        except ApiException as exc:
            if exc.status in (403, 404):  # not there, or its CRD is not: the router says so
                return None
            raise

    async def _set_finalizer(self, body: Body, add: bool) -> Body:
        meta = body["metadata"]
        kept = [f for f in meta.get("finalizers") or [] if f != FINALIZER]
        patch = {
            "metadata": {
                "resourceVersion": meta["resourceVersion"],  # 409 if it changed meanwhile
                "finalizers": [*kept, FINALIZER] if add else kept,
            }
        }
        M.API_CALLS.labels("finalizer").inc()
        try:
            written = await self.kube.merge_patch_custom(
                "rollouts", meta["namespace"], meta["name"], patch
            )
        except ApiException as exc:
            if exc.status in (404, 409):
                raise Conflict("rollout changed while setting its finalizer") from exc
            raise
        self.cache.put_rollout(written)
        return dict(written)

    async def _finalize(
        self,
        body: Body,
        ctx: RouteContext | None,
        routers: RouterSet | None,
        workload: WorkloadObserved | None,
    ) -> None:
        """Deleted: give the user's router objects back to the stable and the user's
        Deployment its pods (Ready), then let it go."""
        if FINALIZER not in (body["metadata"].get("finalizers") or []):
            return
        if workload is not None and not await self._workload_back(body, workload):
            return
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        bucket = ctx.children if ctx is not None else self._bucket(key, body)
        holder = routers.services.holder(ctx) if ctx is not None and routers else None
        record = A.note(bucket, holder)
        if ctx is not None and routers is not None:
            M.API_CALLS.labels("traffic").inc()
            try:
                for written in await routers.release(ctx):
                    self._cache_written(written)
            except RouterProblem as exc:  # nothing left to restore there
                log.info("router release skipped", rollout=ctx.name, reason=str(exc))
            for written in await routers.services.release(ctx):
                self._cache_written(written)
        if record is not None:
            # Routers the spec no longer names (all of them when it does not parse): from
            # what was last applied. Their own objects go with the Rollout.
            fields = A.dropped(record, ctx.spec if ctx is not None else None)
            objects = self.cache.objects_of(key)
            for written in await A.release(
                self.kube, body, bucket, objects, record, fields, delete_owned=False
            ):
                self._cache_written(written)
            if ctx is None:  # the user's Services too, from the names last applied
                spec = A.spec_of(record)
                if spec is not None:
                    old = RouteContext(body, spec, bucket, objects)
                    for written in await ServiceRouter(self.kube).release(old):
                        self._cache_written(written)
        # Unlabelled before the Rollout goes (so none is left labelled once it is gone),
        # unless another Rollout names them; a conflict below labels them again next pass.
        await unmark_named(self.kube, key[0], self.cache.unnamed(key, set()))
        await self._set_finalizer(body, add=False)

    def _bucket(self, key: Key, body: Body) -> dict[str, Body]:
        uid = body["metadata"]["uid"]
        return {k: v for k, v in self.cache.children.get(key, {}).items() if _owned(v, uid)}

    async def _release_dropped(self, ctx: RouteContext, routers: RouterSet) -> None:
        """A router removed from trafficRouting gives its objects back (from the note),
        then the note forgets it; killed in between, the next pass releases again."""
        record = A.note(ctx.children, routers.services.holder(ctx))
        fields = A.dropped(record, ctx.spec) if record else []
        if record is None or not fields:
            return
        M.API_CALLS.labels("traffic").inc()
        for written in await A.release(
            self.kube, ctx.rollout, ctx.children, ctx.objects, record, fields
        ):
            self._cache_written(written)
        plan = routers.services.applied(ctx)
        if plan is not None:
            for written in await routers.services.restamp(ctx, plan):
                self._cache_written(written)

    async def _workload_back(self, body: Body, workload: WorkloadObserved) -> bool:
        """Scale the user's Deployment back up and wait for its pods to be Ready, so the
        Rollout's own go only then; bounded by progressDeadlineSeconds after the delete."""
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        want = int((body.get("spec") or {}).get("replicas", 1) or 0)
        deadline = int((body.get("spec") or {}).get("progressDeadlineSeconds", 600) or 600)
        if workload.scale_down != "never" and workload.replicas < want:
            await self.workloads.scale(key[0], workload.name, want)
        deleted = datetime.fromisoformat(str(meta["deletionTimestamp"]).replace("Z", "+00:00"))
        waited = (self.clock() - deleted).total_seconds()
        if workload.scale_down != "never" and workload.ready < want and waited < deadline:
            self.queue.add_after(key, 2.0)  # its watch events wake us sooner
            return False
        if workload.ready < want and workload.scale_down != "never":
            note = EventNote(
                "WorkloadNotReady",
                f"Deployment {workload.name} has {workload.ready}/{want} Ready pods "
                f"{deadline}s after the Rollout was deleted; letting the Rollout go anyway",
                "Warning",
            )
            await self._post_event(body, note, self.clock())
        with contextlib.suppress(ApiException):  # gone already: nothing to unlabel
            await self.workloads.label(key[0], workload.name, None)
        return True

    async def _apply(self, key: Key, ctx: RouteContext, act: Any, routers: RouterSet) -> None:
        name, namespace = ctx.name, ctx.namespace
        try:
            if isinstance(act, DeploySlot):
                try:
                    await self._deploy(key, ctx, act)
                except (ValidationError, TypeError, ValueError) as exc:
                    # The client itself refuses to send it (a quantity that is a list...).
                    what = " ".join(str(exc).split())[:500]
                    raise Rejected(act.revision, f"cannot be sent as a Deployment: {what}") from exc
            elif isinstance(act, ScaleSlot):
                M.API_CALLS.labels("scale").inc()
                body = await self.kube.patch_deployment(
                    namespace,
                    C.deployment_name(name, act.slot),
                    {"spec": {"replicas": act.replicas}},
                )
                self.cache.put_child(body)
            elif isinstance(act, CreateRun):
                await self._create_run(ctx, act)
            elif isinstance(act, DeleteRun):
                M.API_CALLS.labels("delete_run").inc()
                with contextlib.suppress(ApiException):  # already gone is fine
                    await self.kube.call(
                        self.kube.custom.delete_namespaced_custom_object,
                        GROUP,
                        VERSION,
                        namespace,
                        "analysisruns",
                        act.name,
                    )
                gone = ctx.children.get(f"AnalysisRun/{act.name}")
                if gone is not None:
                    self.cache.put_child(gone, deleted=True)
            elif isinstance(act, TerminateRun):
                M.API_CALLS.labels("terminate_run").inc()
                patch = {"spec": {"terminate": True}}
                written = await self.kube.merge_patch_custom(
                    "analysisruns", namespace, act.name, patch
                )
                self.cache.put_child({**written, "kind": "AnalysisRun"})
            elif isinstance(act, SetTraffic):
                await self._set_traffic(key, ctx, act, routers)
            elif isinstance(act, ScaleWorkload):
                await self.workloads.scale(namespace, act.name, act.replicas)
            elif isinstance(act, SetBaseline | RemoveBaseline):
                await self._baseline(ctx, act)
            elif isinstance(act, CreateJob):
                await self._create_job(ctx, act)
            elif isinstance(act, DeleteJob):
                M.API_CALLS.labels("delete_job").inc()
                with contextlib.suppress(ApiException):  # already gone is fine
                    await self.kube.delete_job(namespace, act.name)
                gone = ctx.children.get(f"Job/{act.name}")
                if gone is not None:
                    self.cache.put_child(gone, deleted=True)
        except ApiException as exc:
            message = _api_message(exc)
            if isinstance(act, DeploySlot) and _refused_template(exc, message):
                raise Rejected(act.revision, message) from exc
            if exc.status == 409 and "already exists" in message:
                kind = "Deployment" if isinstance(act, DeploySlot) else "object"
                raise Rejected(
                    f"child:{kind}",
                    f"{message}: it is not owned by Rollout {name}; Sluice will not adopt or "
                    "overwrite it (rename the Rollout, or delete that object)",
                ) from exc
            if exc.status in (404, 409, 422):
                raise Conflict(str(exc.reason)) from exc
            raise

    def _claim(self, key: Key, claims: set[str]) -> set[Key]:
        """Record what `key` claims; returns the other claimants of what it let go."""
        freed: set[Key] = set()
        for gone in self.claimed.get(key, set()) - claims:
            who = self.claims.get((key[0], gone), set())
            who.discard(key)
            freed |= who
            if not who:
                self.claims.pop((key[0], gone), None)
                self._unindex(key[0], gone)
        self.claimed[key] = claims
        for claim in claims:
            self.claims.setdefault((key[0], claim), set()).add(key)
            if claim.startswith("Ingress "):
                self.ingress_claims.setdefault((key[0], _ingress_of(claim)), set()).add(claim)
        return freed

    def _unindex(self, namespace: str, claim: str) -> None:
        where = (namespace, _ingress_of(claim))
        on = self.ingress_claims.get(where)
        if on is not None:
            on.discard(claim)
            if not on:
                del self.ingress_claims[where]

    def _claim_problem(self, key: Key, claims: set[str], objects: dict[str, Body]) -> str | None:
        """Two Rollouts naming one route: the older one keeps it, the other holds. A claim
        on an object that is not there is recorded (the older claimant keeps it once it
        appears) but said by none: every claimant reports the router's "not found", so a
        claimant deleted changes nothing for the others (no message passed on, no write)."""
        for other in self._claim(key, claims):
            self.queue.add(other)
        for claim in sorted(claims):
            if _claimed_object(claim) not in objects:
                continue
            rivals = [k for k in self._rivals(key[0], claim) if k in self.cache.rollouts]
            owner = min(rivals, key=self._age)
            if owner != key:
                return f"shared route: {claim} is already managed by Rollout {owner[1]}"
        return None

    def _rivals(self, namespace: str, claim: str) -> set[Key]:
        """The claimants of `claim`. An NGINX Ingress not read yet is claimed whole
        ("Ingress web"), one read by its host rules ("Ingress web host h"): the two
        overlap, whichever Rollout saw the Ingress first."""
        found = set(self.claims.get((namespace, claim), set()))
        if claim.startswith("Ingress "):
            whole = _ingress_of(claim)
            for other in self.ingress_claims.get((namespace, whole), set()):
                if other != claim and (other == whole or claim == whole):
                    found |= self.claims.get((namespace, other), set())
        return found

    def _age(self, key: Key) -> tuple[str, str]:
        meta = self.cache.rollouts[key]["metadata"]
        return (str(meta.get("creationTimestamp", "")), key[1])

    async def _set_traffic(
        self, key: Key, ctx: RouteContext, act: SetTraffic, routers: RouterSet
    ) -> None:
        if key in self.claim_problems:
            return  # another Rollout's route: never written from here
        M.API_CALLS.labels("traffic").inc()
        try:
            written = await routers.apply(ctx, act.plan)
        except RouterProblem as exc:
            for body in exc.written if isinstance(exc, PartlyApplied) else []:
                self._cache_written(body)  # the routers that took it (back to stable)
            if self.traffic_problems.get(key) != str(exc):
                log.warning("router problem", namespace=key[0], rollout=key[1], problem=str(exc))
            self.traffic_problems[key] = str(exc)
            self.queue.add_after(key, PROBLEM_RETRY_SECONDS)
            return
        except ApiException as exc:
            if exc.status == 409:  # a user object changed under us: read it again
                self.cache.name_objects(key, set())
            raise
        if self.traffic_problems.pop(key, None) is not None:
            self.queue.add(key)  # the engine sees the problem gone
        for body in written:
            self._cache_written(body)
        if act.restore:
            note = EventNote(
                "TrafficRestored",
                f"router objects no longer carried canary weight {act.plan.canary_weight} "
                "(edited by hand?); Sluice wrote it back",
                "Warning",
            )
            await self._post_event(ctx.rollout, note, self.clock())

    async def _create_run(self, ctx: RouteContext, act: CreateRun) -> None:
        assert ctx.spec is not None
        try:
            analysis, where = analysis_for(ctx.spec, act.kind, act.step)
            wanted = {(t.template_name, t.cluster_scope) for t in analysis.templates}
            templates = {ref: await self._template(ctx.namespace, *ref) for ref in wanted}
            metrics, args, retention = merge(analysis, where, templates, act.kind)
            card = judge_score_of(analysis, templates)
        except AnalysisInvalid as exc:
            raise Rejected(act.name, str(exc)) from exc
        body = manifest(
            ctx.rollout, act.name, act.kind, act.revision, act.step, metrics, args, retention, card
        )
        M.API_CALLS.labels("create_run").inc()
        written = await self.kube.create_custom("analysisruns", body)
        self.cache.put_child({**written, "kind": "AnalysisRun"})
        if self.on_run_created is not None:
            self.on_run_created(written)

    async def _create_job(self, ctx: RouteContext, act: CreateJob) -> None:
        assert ctx.spec is not None
        body = job_manifest(ctx.rollout, ctx.spec, act)
        M.API_CALLS.labels("create_job").inc()
        try:
            written = await self.kube.create_job(body)
        except ApiException as exc:
            if exc.status == 409:  # made before a kill, not in the cache yet: never twice
                written = await self.kube.raw(
                    self.kube.batch.read_namespaced_job, act.name, ctx.namespace
                )
                if not _owned(written, ctx.rollout["metadata"]["uid"]):
                    raise Rejected(
                        f"child:Job/{act.name}",
                        f"Job {act.name} exists and is not owned by Rollout {ctx.name}",
                    ) from exc
            elif exc.status in (400, 422):
                raise Rejected(
                    f"{ctx.name}-{act.revision}-job",
                    f"spec.strategy.canary.steps[{act.step}].job: {_api_message(exc)}",
                ) from exc
            else:
                raise
        self.cache.put_child({**written, "kind": "Job"})

    async def _check_analyses(self, ctx: RouteContext, revision: str) -> str:
        """Refuse (Rejected) a canary whose analyses cannot run; else whether a judge metric
        of theirs wants a baseline Deployment ("wanted" or "no", for its Deployment)."""
        assert ctx.spec is not None
        canary = ctx.spec.strategy.canary
        wanted: list[tuple[str, int | None]] = [
            ("step", i) for i, step in enumerate(canary.steps) if step.analysis is not None
        ]
        wanted += [("background", None)] if canary.analysis else []
        bg = ctx.spec.strategy.blue_green
        wanted += [("prePromotion", None)] if bg and bg.pre_promotion_analysis else []
        wanted += [("postPromotion", None)] if ctx.spec.strategy.post_promotion() else []
        templates: dict[tuple[str, bool], Body | None] = {}
        wants = False
        for kind, step in wanted:
            try:
                analysis, where = analysis_for(ctx.spec, kind, step)
                for ref in {(t.template_name, t.cluster_scope) for t in analysis.templates}:
                    if ref not in templates:
                        templates[ref] = await self._template(ctx.namespace, *ref)
                metrics = merge(analysis, where, templates, kind)[0]
            except AnalysisInvalid as exc:
                raise Rejected(revision, str(exc)) from exc
            wants |= any(m.judge is not None and m.judge.baseline == "baseline" for m in metrics)
        return "wanted" if wants else "no"

    def run_lookup(self, key: tuple[str, str, str]) -> tuple[Body, Body | None] | None:
        """(namespace, rollout, run) -> the run's body and its Rollout's, from the cache."""
        body = self.cache.children.get((key[0], key[1]), {}).get(f"AnalysisRun/{key[2]}")
        rollout = self.cache.rollouts.get((key[0], key[1]))
        if body is None or rollout is None:
            return None  # a run of another shard (or of a Rollout gone): not measured here
        return body, rollout

    async def record_alert(self, alert: AlertAbort) -> str:
        """A firing alert becomes a Failed AnalysisRun of the revision it hurts."""
        key = (alert.namespace, alert.rollout)
        body = self.cache.rollouts.get(key)
        if body is None:
            return "no such Rollout"
        st = _status(body)
        revision = st.canary_revision if st.canary_revision and not st.abort else ""
        if not revision and st.post_promotion_run:
            revision = st.stable_revision  # the bake after promotion: revert to the warm one
        if not revision:
            return "nothing to abort: no canary in progress"
        prefix = alert_run_prefix(alert.rollout, revision, st.attempt)
        # One run per canary and attempt, whatever the alerts' fingerprints say (they are
        # the sender's text, not a valid name, and a storm of them made dozens of runs).
        name = f"{prefix}abort"
        metric = MetricResult(
            name=alert.alertname,
            phase="Failed",
            count=1,
            failed=1,
            consecutive_failed=1,
            message=f"alert {alert.alertname} firing",
            measurements=[
                Measurement(
                    phase="Failed",
                    value="firing",
                    started_at=alert.starts_at or fmt(self.clock()),
                    finished_at=fmt(self.clock()),
                    message=f"{alert.summary or 'no summary'}; labels {alert.labels}",
                )
            ],
        )
        message = f"alert {alert.alertname} firing: {alert.summary or alert.labels}"
        manifest_body = manifest(body, name, "alert", revision, None, [], [], 1)
        M.API_CALLS.labels("create_run").inc()
        try:
            created = await self.kube.create_custom("analysisruns", manifest_body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            created = await self.kube.call(
                self.kube.custom.get_namespaced_custom_object,
                GROUP,
                VERSION,
                alert.namespace,
                "analysisruns",
                name,
            )
            if (created.get("status") or {}).get("phase") == "Failed":
                return f"already recorded as {name}"  # else its status write failed: redo it
        created["status"] = strip_empty(
            AnalysisRunStatus(
                phase="Failed",
                message=message,
                started_at=fmt(self.clock()),
                finished_at=fmt(self.clock()),
                metric_results=[metric],
            ).model_dump(by_alias=True)
        )
        written = await self.kube.replace_status("analysisruns", created)
        self.cache.put_child({**written, "kind": "AnalysisRun"})
        self.queue.add(key)
        return f"recorded as failed AnalysisRun {name}"

    async def _template(self, namespace: str, name: str, cluster: bool) -> Body | None:
        try:
            if cluster:
                return await self.kube.call(
                    self.kube.custom.get_cluster_custom_object,
                    GROUP,
                    VERSION,
                    "clusteranalysistemplates",
                    name,
                )
            return await self.kube.call(
                self.kube.custom.get_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                "analysistemplates",
                name,
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def _check_new_canary(self, ctx: RouteContext, decision: Decision) -> None:
        """A new canary: every analysis it will need must resolve before any action of the
        decision is applied. Invalid means nothing is touched (not the stable scaled to the
        new replicas, nor the canary deployed and then refused at its first analysis). The
        first revision becomes stable directly: it runs no analysis."""
        stable = (ctx.rollout.get("status") or {}).get("stableRevision")
        for left in [k for k in self.checked if k[:2] == (ctx.namespace, ctx.name)]:
            del self.checked[left]  # of a reconcile that failed before its Deployment write
        for act in decision.actions:
            if not isinstance(act, DeploySlot) or not stable:
                continue
            current = ctx.children.get(f"Deployment/{C.deployment_name(ctx.name, act.slot)}")
            annotations = (current or {}).get("metadata", {}).get("annotations") or {}
            if act.revision not in (stable, annotations.get(L.REVISION)):
                baseline = await self._check_analyses(ctx, act.revision)
                self.checked[(ctx.namespace, ctx.name, act.revision)] = baseline  # for _deploy
                await self._dry_run(ctx, act)

    async def _dry_run(self, ctx: RouteContext, act: DeploySlot) -> None:
        """What only the API server knows (a container name it refuses, a quantity of the
        wrong type): asked before the stable is scaled or anything else is written."""
        assert ctx.spec is not None
        M.API_CALLS.labels("dry_run").inc()
        try:
            manifest = C.deployment(ctx.rollout, ctx.spec, act.slot, act.revision, act.replicas, 1)
            await self.kube.dry_run_deployment(manifest)
        except (ValidationError, TypeError, ValueError) as exc:
            what = " ".join(str(exc).split())[:500]
            raise Rejected(act.revision, f"cannot be sent as a Deployment: {what}") from exc
        except ApiException as exc:
            # The dry run's generated name is random: name the slot's, so the message (and
            # the InvalidSpec told once) is the same on every retry.
            real = C.deployment_name(ctx.name, act.slot)
            message = re.sub(
                rf'"{re.escape(real[:50])}-[a-z0-9]{{5}}"', f'"{real}"', _api_message(exc)
            )
            if _refused_template(exc, message):
                raise Rejected(act.revision, message) from exc
            raise

    async def _deploy(self, key: Key, ctx: RouteContext, act: DeploySlot) -> None:
        assert ctx.spec is not None
        name = C.deployment_name(ctx.name, act.slot)
        current = ctx.children.get(f"Deployment/{name}")
        stable = (ctx.rollout.get("status") or {}).get("stableRevision")
        revision_now = (current or {}).get("metadata", {}).get("annotations", {}).get(L.REVISION)
        if stable and act.revision not in (stable, revision_now):
            # A new canary: its analyses were checked before any action (_check_new_canary),
            # which also said whether a judge metric wants a baseline Deployment. (The first
            # revision becomes stable directly: it runs no analysis.)
            baseline: str | None = self.checked.pop((ctx.namespace, ctx.name, act.revision), None)
            if baseline is None:
                baseline = await self._check_analyses(ctx, act.revision)
        else:
            baseline = None  # this revision's Deployment already says
        generation = int(current["metadata"].get("generation", 1)) if current else 0
        manifest = C.deployment(
            ctx.rollout, ctx.spec, act.slot, act.revision, act.replicas, generation + 1
        )
        template = manifest["spec"]["template"]
        # trackConfig: the copies this template runs exist before any pod of it starts.
        await self.configs.ensure(key, template, C.owner_reference(ctx.rollout), ctx.rollout)
        if current is None:
            M.API_CALLS.labels("create").inc()
            if baseline is not None:
                manifest["metadata"]["annotations"][L.BASELINE] = baseline
            body = await self.kube.create_deployment(manifest)
        else:
            annotations = manifest["metadata"]["annotations"]
            M.API_CALLS.labels("deploy").inc()
            body = await self.kube.patch_deployment(
                ctx.namespace,
                name,
                [
                    # The generation test makes the template-generation annotation exact.
                    {"op": "test", "path": "/metadata/generation", "value": generation},
                    {
                        "op": "replace",
                        "path": "/spec/template",
                        "value": template,
                    },
                    {"op": "replace", "path": "/spec/replicas", "value": act.replicas},
                    {"op": "add", "path": _ann(L.REVISION), "value": annotations[L.REVISION]},
                    {
                        "op": "add",
                        "path": _ann(L.TEMPLATE_GENERATION),
                        "value": annotations[L.TEMPLATE_GENERATION],
                    },
                    *(
                        [{"op": "add", "path": _ann(L.BASELINE), "value": baseline}]
                        if baseline is not None
                        else []
                    ),
                ],
            )
        body.setdefault("kind", "Deployment")
        self.cache.put_child(body)
        before = ((current or {}).get("spec") or {}).get("template") or {}
        if references(before) - references(template):
            await self._prune_configs(key, ctx)  # a copy may have run its last pod here

    async def _prune_configs(self, key: Key, ctx: RouteContext) -> None:
        """Copies that no Deployment of the Rollout runs any more (the template a slot ran
        before this write) are deleted; the other slot's stay (warm, or the stable)."""
        running = [
            (child.get("spec") or {}).get("template") or {}
            for child in self._bucket(key, ctx.rollout).values()
            if child.get("kind") == "Deployment"
        ]
        removed = await self.configs.prune(key, running)
        if removed:
            log.info("config copies pruned", namespace=key[0], rollout=key[1], removed=removed)

    async def _baseline(self, ctx: RouteContext, act: SetBaseline | RemoveBaseline) -> None:
        """Create, resize or delete <rollout>-baseline (see sluice.engine.baseline)."""
        name = C.baseline_name(ctx.name)
        current = ctx.children.get(f"Deployment/{name}")
        if isinstance(act, RemoveBaseline):
            M.API_CALLS.labels("delete").inc()
            await self.kube.delete_deployment(ctx.namespace, name)
            if current is not None:
                self.cache.put_child(current, deleted=True)
            return
        stable = ctx.children.get(f"Deployment/{C.deployment_name(ctx.name, act.slot)}")
        if stable is None:
            return  # the stable's Deployment is not seen yet: nothing to copy
        manifest = C.baseline_deployment(ctx.rollout, stable, act.revision, act.replicas)
        if current is None:
            M.API_CALLS.labels("create").inc()
            body = await self.kube.create_deployment(manifest)
        else:
            M.API_CALLS.labels("deploy").inc()
            body = await self.kube.patch_deployment(
                ctx.namespace,
                name,
                [
                    {
                        "op": "replace",
                        "path": "/spec/template",
                        "value": manifest["spec"]["template"],
                    },
                    {"op": "replace", "path": "/spec/replicas", "value": act.replicas},
                    {"op": "add", "path": _ann(L.REVISION), "value": act.revision},
                ],
            )
        body.setdefault("kind", "Deployment")
        self.cache.put_child(body)

    async def _write_status(self, key: Key, body: Body, status: RolloutStatus) -> None:
        meta = body["metadata"]
        payload = {
            "apiVersion": body.get("apiVersion"),
            "kind": "Rollout",
            "metadata": {
                "name": meta["name"],
                "namespace": meta["namespace"],
                "resourceVersion": meta["resourceVersion"],
            },
            "spec": body.get("spec"),
            "status": wire_status(status),
        }
        M.API_CALLS.labels("status").inc()
        try:
            written = await self.kube.replace_rollout_status(payload)
        except ApiException as exc:
            if exc.status in (404, 409):
                raise Conflict("rollout changed while reconciling") from exc
            raise
        self.cache.put_rollout(written)

    async def _report_error(self, key: Key, message: str) -> None:
        """One Warning Event per distinct error, so `kubectl describe` shows why it is stuck."""
        body = self.cache.rollouts.get(key)
        if body is None or self.last_error.get(key) == message:
            return
        self.last_error[key] = message
        note = EventNote("ReconcileError", f"retrying with backoff: {message}", "Warning")
        await self._post_event(body, note, self.clock())

    async def _post_event(
        self,
        body: Body,
        note: Any,
        now: datetime,
        name: str | None = None,
        decided: Body | None = None,
    ) -> None:
        try:
            M.API_CALLS.labels("event").inc()
            event = event_body(body, note, now, name)
            await self.kube.create_event(body["metadata"]["namespace"], event)
        except ApiException as exc:
            if exc.status == 409:
                return  # posted by this decision before (a kill or a conflict): told once
            # an Event lost is not worth a retry of the transition
            log.warning("event not posted", reason=note.reason, error=str(exc.reason))
        self.hooks.tell(body, note.reason, note.message)  # post-rollout, rollback webhooks
        if self.on_event is not None:
            self.on_event(decided or body, note, now)  # must not block: it only queues


def wire_status(status: RolloutStatus) -> Body:
    return strip_empty(status.model_dump(by_alias=True))


def _api_message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "")["message"])
    except (TypeError, ValueError, KeyError):
        return str(exc.body)[:300]


def _refused_template(exc: ApiException, message: str) -> bool:
    """The API server will never take this Deployment: report it once as InvalidSpec.
    (A 422 of our own generation test is a conflict, retried.)"""
    if exc.status == 422:
        return "is invalid" in message
    if exc.status in (400, 413):
        return True
    return exc.status == 500 and "too large" in message


def _ingress_of(claim: str) -> str:
    """The claim on a whole Ingress, of one by host rule: "Ingress web host h" -> "Ingress web"."""
    return claim.split(" host ", 1)[0]


def _claimed_object(claim: str) -> str:
    """The "Kind/name" a claim is on: claims read "Kind name[ what part of it]"."""
    kind, _, rest = claim.partition(" ")
    return f"{kind}/{rest.split(' ', 1)[0]}"


def _ann(key: str) -> str:
    return "/metadata/annotations/" + key.replace("/", "~1")


def _fields(act: Any) -> dict[str, Any]:
    fields = dict(getattr(act, "__dict__", {}))
    if "plan" in fields:
        plan = fields.pop("plan")
        fields.update(
            stable_slot=plan.stable_slot,
            canary_slot=plan.canary_slot,
            canary_weight=plan.canary_weight,
            header_routes=[r.name for r in plan.header_routes],
        )
    return fields
