"""A trial lost before its first report still names its node: ``actor_node`` asks Ray's state API where the
actor named in the error ran (the error can say "actor ... is unavailable" before Ray marks the node dead)."""

from __future__ import annotations

import pytest
import ray

from streamtune.sweeps.runner import _dead_note, actor_node, error_actor

pytestmark = pytest.mark.integration


@ray.remote(num_cpus=0)
class Probe:
    def where(self) -> tuple[str, str]:
        context = ray.get_runtime_context()
        return context.get_actor_id(), context.get_node_id()


def test_the_node_of_a_killed_actor_comes_from_the_actor_id_in_its_error(ray_services: object) -> None:
    probe = Probe.remote()  # type: ignore[attr-defined]
    actor_id, node_id = ray.get(probe.where.remote())
    ray.kill(probe)
    message = f"The actor {actor_id} is unavailable: RpcError: Socket closed rpc_code: 14."
    assert error_actor(message) == actor_id
    assert actor_node(error_actor(message)) == node_id
    assert _dead_note(node_id) == ""  # the node is alive: the trial was not lost with it
    assert actor_node("ff" * 16) is None  # no such actor
