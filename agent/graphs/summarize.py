"""Chart summarization as a planning graph:

check for changes since the last complete run (none: stop) -> gather record -> plan (what is
new) -> fan-out (Send): read each new lab-report PDF, run each new imaging comparison, read each
new chest X-ray (boxes) and whole slide -> settle the documents (dedup, pending writes) -> write
them and the imaging reports -> join the stored transcriptions -> trends -> synthesize -> the
summary -> write it. Nothing new: the run ends after the plan (or, with a change mark of the last
complete run and nothing changed since, before the record is read).
Each analysis is its own transaction (`write_back`).
"""

from __future__ import annotations

from langgraph.graph import START, StateGraph

from agent.context import RunContext
from agent.nodes.build_summary import build_summary
from agent.nodes.check_changes import check_changes
from agent.nodes.compare_imaging import compare_pair
from agent.nodes.compute_trends import compute_trends
from agent.nodes.gather import gather
from agent.nodes.ingest_documents import join_transcriptions, read_document, settle_documents
from agent.nodes.plan_work import ComparisonTask, DocumentTask, fan_out, plan
from agent.nodes.read_study import StudyTask, read_study
from agent.nodes.routing import after_check, after_join, after_trends
from agent.nodes.synthesize import synthesize
from agent.nodes.write_back import write_back
from agent.state import SummarizeState


def build_summarize_graph() -> StateGraph[SummarizeState, RunContext, SummarizeState, SummarizeState]:
    graph = StateGraph(SummarizeState, context_schema=RunContext)
    graph.add_node("check_changes", check_changes)
    graph.add_node("gather", gather)
    graph.add_node("plan", plan)
    graph.add_node("read_document", read_document, input_schema=DocumentTask)
    graph.add_node("compare_pair", compare_pair, input_schema=ComparisonTask)
    graph.add_node("read_study", read_study, input_schema=StudyTask)
    graph.add_node("settle_documents", settle_documents)
    # The one write node, twice: transcribed values are stored before the trends use them, and
    # the imaging reports go with them; the summary is written at the end.
    graph.add_node("write_analyses", write_back)
    graph.add_node("join_transcriptions", join_transcriptions)
    graph.add_node("compute_trends", compute_trends)
    graph.add_node("synthesize", synthesize)
    graph.add_node("build_summary", build_summary)
    graph.add_node("write_summary", write_back)
    graph.add_edge(START, "check_changes")
    graph.add_conditional_edges("check_changes", after_check)
    graph.add_edge("gather", "plan")
    graph.add_conditional_edges(
        "plan", fan_out, ["read_document", "compare_pair", "settle_documents", "__end__"]
    )
    graph.add_edge("read_document", "settle_documents")
    graph.add_edge("compare_pair", "settle_documents")
    graph.add_edge("read_study", "settle_documents")
    graph.add_edge("settle_documents", "write_analyses")
    graph.add_edge("write_analyses", "join_transcriptions")
    graph.add_conditional_edges("join_transcriptions", after_join)
    graph.add_conditional_edges("compute_trends", after_trends)
    graph.add_edge("synthesize", "build_summary")
    graph.add_edge("build_summary", "write_summary")
    graph.add_edge("write_summary", "__end__")
    return graph


summarize_graph = build_summarize_graph().compile(name="summarize")
