"""The device agent: verified loading and the local OpenAI-compatible API.

The agent is the long-running process on a device. It loads only an artifact whose
signature verifies against its trust store (from a private read-only copy, so the bytes that
run are the bytes that were verified), serves it over a local OpenAI-compatible HTTP API
(Starlette on Uvicorn) with one generation at a time from a bounded queue, passes every
prompt and every streamed output through the safety filter's hooks, exposes ``/healthz`` and
Prometheus ``/metrics``, reloads on SIGHUP (or ``POST /admin/reload``) only to an artifact
that verifies, and shuts down gracefully on SIGTERM. ::

    from pathlib import Path
    from edgeward.device_agents import Agent, load_agent_config

    config = load_agent_config(Path("agent.toml"))
    agent = Agent(config)
    agent.start()                      # raises SignatureError if the artifact is refused
    with agent.serve_in_thread() as running:
        print(running.base_url)        # give this to openai.OpenAI(base_url=...)

``edgeward agent run --config agent.toml`` runs :func:`run_agent`; ``edgeward run`` runs
:func:`run_once`. Updates go through the A/B slots (:class:`SlotStore`: install, switch,
health-check with :func:`probe_artifact`, commit or roll back); air-gapped devices take them
from bundles (:func:`export_bundle`, :func:`import_bundle`). docs/agent.md is the reference
(config keys, endpoints, limits, metrics); docs/updates.md covers slots and bundles.

May import :mod:`edgeward.runtimes`, :mod:`edgeward.safety`, :mod:`edgeward.provenance`,
:mod:`edgeward.fleet.protocol`, :mod:`edgeward.hardware_profiles` and :mod:`edgeward.errors`;
never the fleet manager.
"""

from edgeward.device_agents._agent import Agent, ReloadResult, RunningAgent
from edgeward.device_agents._bundle import (
    ImportResult,
    bundle_artifact_digest,
    export_bundle,
    import_bundle,
)
from edgeward.device_agents._config import (
    DEFAULT_LISTEN,
    SLOTS_ARTIFACT,
    AgentConfig,
    config_from_dict,
    default_state_dir,
    load_agent_config,
)
from edgeward.device_agents._log import configure_logging
from edgeward.device_agents._metrics import METRICS, Metrics
from edgeward.device_agents._oneshot import RunResult, default_run_dir, run_once
from edgeward.device_agents._policy import safety_filter_for
from edgeward.device_agents._probe import ProbeReport, probe_artifact
from edgeward.device_agents._run import AgentRun, run_agent
from edgeward.device_agents._slots import SlotPointer, SlotStore, UpdateResult
from edgeward.device_agents._superseded import (
    DowngradeAuthorisation,
    SupersededRecord,
    authorise_downgrade,
)
from edgeward.device_agents._verified import LoadedModel, ModelInfo, ModelStore

__all__ = [
    "DEFAULT_LISTEN",
    "METRICS",
    "SLOTS_ARTIFACT",
    "Agent",
    "AgentConfig",
    "AgentRun",
    "DowngradeAuthorisation",
    "ImportResult",
    "LoadedModel",
    "Metrics",
    "ModelInfo",
    "ModelStore",
    "ProbeReport",
    "ReloadResult",
    "RunResult",
    "RunningAgent",
    "SlotPointer",
    "SlotStore",
    "SupersededRecord",
    "UpdateResult",
    "authorise_downgrade",
    "bundle_artifact_digest",
    "config_from_dict",
    "configure_logging",
    "default_run_dir",
    "default_state_dir",
    "export_bundle",
    "import_bundle",
    "load_agent_config",
    "probe_artifact",
    "run_agent",
    "run_once",
    "safety_filter_for",
]
