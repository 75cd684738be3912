"""Chart summarization: gather record -> lab-report PDFs -> write their transcriptions -> trends ->
imaging comparisons -> synthesize -> the summary -> write the analyses (each its own transaction)."""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph

from agent.context import RunContext
from agent.nodes.build_summary import build_summary
from agent.nodes.compare_imaging import compare_imaging_studies
from agent.nodes.compute_trends import compute_trends
from agent.nodes.gather import gather
from agent.nodes.ingest_documents import ingest_documents, join_transcriptions
from agent.nodes.routing import after_imaging, after_trends
from agent.nodes.synthesize import synthesize
from agent.nodes.write_back import write_back
from agent.state import SummarizeState


def build_summarize_graph() -> StateGraph[SummarizeState, RunContext, SummarizeState, SummarizeState]:
    graph = StateGraph(SummarizeState, context_schema=RunContext)
    graph.add_node("gather", gather)
    graph.add_node("ingest_documents", ingest_documents)
    # The one write node, twice: transcribed values are stored before the trends use them.
    graph.add_node("write_documents", write_back)
    graph.add_node("join_transcriptions", join_transcriptions)
    graph.add_node("compute_trends", compute_trends)
    graph.add_node("compare_imaging", compare_imaging_studies)
    graph.add_node("synthesize", synthesize)
    graph.add_node("build_summary", build_summary)
    graph.add_node("write_back", write_back)
    graph.add_edge(START, "gather")
    graph.add_edge("gather", "ingest_documents")
    graph.add_edge("ingest_documents", "write_documents")
    graph.add_edge("write_documents", "join_transcriptions")
    graph.add_edge("join_transcriptions", "compute_trends")
    graph.add_conditional_edges("compute_trends", after_trends)
    graph.add_conditional_edges("compare_imaging", after_imaging)
    graph.add_edge("synthesize", "build_summary")
    graph.add_edge("build_summary", "write_back")
    graph.add_edge("write_back", END)
    return graph


summarize_graph = build_summarize_graph().compile(name="summarize")
