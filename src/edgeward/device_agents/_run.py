"""Running the agent as the ``edgeward agent run`` process: start, serve with signals, close."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeward.device_agents._agent import Agent
from edgeward.device_agents._config import AgentConfig
from edgeward.device_agents._verified import ModelInfo
from edgeward.safety import SafetyFilter

__all__ = ["AgentRun", "run_agent"]


@dataclass(frozen=True)
class AgentRun:
    """How a run of the agent ended (``edgeward agent run --json`` prints it).

    Attributes:
        url: where it served.
        model: the model serving at the end.
        uptime_s: seconds from the first load to the end.
        shutdown_reason: ``SIGTERM``, ``SIGINT`` or ``stop``.
        requests: HTTP requests answered, by status code.
    """

    url: str
    model: ModelInfo
    uptime_s: float
    shutdown_reason: str
    requests: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {"url": self.url, "model": self.model.to_dict(), "uptime_s": self.uptime_s,
                "shutdown_reason": self.shutdown_reason, "requests": self.requests}


def run_agent(config: AgentConfig, *, config_path: Path | None = None,
              safety_filter: SafetyFilter | None = None) -> AgentRun:
    """Run the agent in this (main) thread until SIGTERM or SIGINT; SIGHUP reloads.

    Args:
        config: the configuration.
        config_path: its file, re-read on reload.
        safety_filter: overrides ``config.safety_policy``.

    Returns:
        How the run ended.

    Raises:
        SignatureError: the artifact was refused at start (nothing served).
        ConfigError, ArtifactError, RuntimeBackendError, ResourceError: it could not start.
    """
    agent = Agent(config, config_path=config_path, safety_filter=safety_filter)
    agent.start()
    try:
        asyncio.run(agent.serve(handle_signals=True))
        model = agent.engine.model.info
    finally:
        agent.close()
    requests: dict[str, int] = {}
    for labels, n in agent.metrics.series("edgeward_agent_requests_total").items():
        code = dict(labels)["code"]
        requests[code] = requests.get(code, 0) + int(n)
    return AgentRun(agent.url, model, round(time.monotonic() - agent.started_at, 3),
                    agent.shutdown_reason or "stop", requests)
