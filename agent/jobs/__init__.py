"""Automated jobs: chart summarization over one patient or a whole server."""
