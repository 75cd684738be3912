"""Prompts of the agent graphs: pure builders of model requests and checks of the answers."""
