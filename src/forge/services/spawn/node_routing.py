"""Routing to the lab node holding a scenario: its URL and submit subject come from the
scenario row, which only the node itself writes (never from request input)."""

from __future__ import annotations

from forge.config.settings import Settings
from forge.errors import ForgeError


def node_base(settings: Settings, node_url: str | None) -> str:
    """The base URL of the node holding the lab; ORCHESTRATOR_URL for rows without one."""
    return (node_url or settings.orchestrator_url).rstrip("/")


def node_unreachable(node_id: str | None) -> ForgeError:
    """503 `lab_node_unreachable`: the node holding the lab does not answer."""
    return ForgeError("lab_node_unreachable", 503,
                      f"lab node {node_id} is unreachable; the lab fails by itself if the "
                      "node does not come back", [{"field": "node_id", "value": node_id}],
                      headers={"Retry-After": "10"})


def node_silent_after_send(node_id: str | None) -> ForgeError:
    """503 `lab_node_unreachable` for a request that may have reached the node before it
    stopped answering (a node killed mid-request serves its queued requests once back):
    said, so nobody takes the request for refused."""
    return ForgeError("lab_node_unreachable", 503,
                      f"lab node {node_id} did not answer after the request reached it: it "
                      "may still be carried out when the node is back (look at the lab's "
                      "state before trying again); the lab fails by itself if the node does "
                      "not come back", [{"field": "node_id", "value": node_id}],
                      headers={"Retry-After": "10"})


# A node that did not carry out a delete: it does not answer, or it is stopping (a restart);
# `backend_unreachable` is the one orchestrator of an installation without lab nodes.
DELETE_KEPT_ON = frozenset({"lab_node_unreachable", "service_stopping", "backend_unreachable"})


def delete_kept(refused: ForgeError, node_id: str | None) -> ForgeError:
    """The node's refusal (502 or 503) of a delete now kept on the lab's row (`want_delete`),
    its code and Retry-After unchanged: said, so the learner knows the lab goes once its
    node is back, without asking again."""
    who = f"lab node {node_id}" if node_id else "the lab's node"
    return ForgeError(refused.code, refused.status,
                      f"{who} did not answer or is restarting; the delete is "
                      "kept: the lab is deleted when the node is back, and fails by itself if "
                      "the node does not come back", [{"field": "node_id", "value": node_id}],
                      headers=refused.headers)
