"""Real flow runs as a test sees them: the run a call made, and the artifacts of that run only.

`Artifact.get(key)` returns the latest artifact of that key on the whole test API, which may be
another test's: these read the artifacts of one flow run, by its id.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
)
from prefect.client.schemas.objects import State
from prefect.flows import Flow


def run_flow(flow: Flow[..., Any], **parameters: Any) -> tuple[UUID, State[Any]]:
    """Call a flow; the id of its flow run and its final state (`state.result()` is its return
    value, or raises what the flow raised)."""
    state = flow(**parameters, return_state=True)
    flow_run_id = state.state_details.flow_run_id
    assert flow_run_id is not None, state
    return flow_run_id, state


def artifact(key: str, flow_run_id: UUID | str) -> str:
    """The data of the one artifact `key` made by that flow run or one of its tasks."""
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[key]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(str(flow_run_id))]),
            )
        )
    assert len(found) == 1, f"flow run {flow_run_id} made {len(found)} artifact(s) {key!r}"
    return str(found[0].data)
