"""The ChartAgent service: the SMART app, the chat endpoint (AG-UI), MCP and CDS Hooks (FastAPI)."""
