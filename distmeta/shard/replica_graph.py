"""The compiled Ray graph over the replicas (``cluster.replica_calls: compiled``): one execution
asks every replica for an ordinary step, at a fraction of the learner's CPU that one actor task
per replica costs (docs/performance.md).

A step that fails in the graph leaves it broken: the group tries the step by actor tasks, which
name the replicas lost, and tears the graph down after its recovery has killed a hung actor (a
teardown waits on every actor's graph loop, a stopped one forever). It is built again at the next
ordinary step.
"""

from __future__ import annotations

import logging

from distmeta.errors import NonFiniteGradientError

log = logging.getLogger(__name__)


def cause_line(exc: BaseException) -> str:
    """The first line of a Ray task error's cause (the replica's own exception), else of the error."""
    cause = getattr(exc, "cause", None)
    text = str(cause if cause is not None else exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


class ReplicaGraph:
    """Built at first use over the handles it is given; ``broken`` once a step failed in it."""

    def __init__(self):
        self._graph = None
        self.broken = False

    def step(self, handles: list, ask: tuple, timeout_s: float) -> list | None:
        """Every replica's reply to ``ask`` (``(step, plan, lr, diagnostics)``), or None when the
        step failed in the graph (then it is broken)."""
        import ray

        try:
            if self._graph is None:
                from ray.dag import InputNode, MultiOutputNode

                with InputNode() as asked:
                    self._graph = MultiOutputNode([h.graph_step.bind(asked) for h in handles]).experimental_compile()
            return list(ray.get(self._graph.execute(ask), timeout=timeout_s))
        except NonFiniteGradientError as exc:  # Ray's task error subclasses the cause: say it plainly
            raise NonFiniteGradientError(str(getattr(exc, "cause", exc))) from None
        except Exception as exc:  # Ray's errors and a replica's own; the tasks tell them apart
            log.warning("all-reduce step %d through the compiled graph failed (%s); trying it by actor tasks", ask[0],
                        cause_line(exc))  # fmt: skip
            self.broken = True
            return None

    def drop(self) -> None:
        """Tear the graph down (it is built again at its next step)."""
        graph, self._graph, self.broken = self._graph, None, False
        if graph is not None:
            try:
                graph.teardown()
            except Exception as exc:  # an actor already gone: the graph is down anyway
                log.warning("tearing the compiled graph down: %s", cause_line(exc))
