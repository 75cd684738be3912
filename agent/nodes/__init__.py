"""Nodes of the agent graphs, one concept per module; graphs only wire them."""
