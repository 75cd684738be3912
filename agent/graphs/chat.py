"""The chat over one patient: start (manifest) -> plan <-> act (tools) -> answer, or confirm a note."""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph

from agent.chat.context import ChatContext
from agent.chat.nodes import act, answer, confirm_note, plan, route, start_turn
from agent.chat.state import ChatState


def build_chat_graph() -> StateGraph[ChatState, ChatContext, ChatState, ChatState]:
    graph = StateGraph(ChatState, context_schema=ChatContext)
    graph.add_node("start_turn", start_turn)
    graph.add_node("plan", plan)
    graph.add_node("act", act)
    graph.add_node("answer", answer)
    graph.add_node("confirm_note", confirm_note)
    graph.add_edge(START, "start_turn")
    graph.add_conditional_edges(
        "start_turn", lambda s: "answer" if s.get("action") else "plan", ["answer", "plan"]
    )
    graph.add_conditional_edges("plan", route, ["act", "answer", "confirm_note"])
    graph.add_edge("act", "plan")
    graph.add_edge("answer", END)
    graph.add_edge("confirm_note", END)
    return graph
