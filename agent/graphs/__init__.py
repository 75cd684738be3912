"""Agent graphs: wiring only; nodes live in `agent.nodes`."""
