// The chat panel: AG-UI over server-sent events from POST /api/agent (fetch + ReadableStream;
// EventSource cannot POST). Tool calls are shown as they run, the answer streams in, and each
// citation ("[Observation/123]") becomes a link that opens the cited resource.

import { postForStream } from "./api.js";
import { el, clear, randomId } from "./dom.js";

// A citation group as the chat writes it: "[Observation/a-1]" or "[Observation/a, Condition/b]".
const CITATION_GROUP = /\[((?:[A-Z][A-Za-z]+\/[A-Za-z0-9.\-]{1,64}(?:\s*[,;]\s*)?)+)\]/g;
const REFERENCE = /[A-Z][A-Za-z]+\/[A-Za-z0-9.\-]{1,64}/g;

/** Yields each event of an SSE body as parsed JSON (the `data:` lines of one event joined). */
export async function* sseEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (value) buffer += value;
    let cut;
    while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
      const data = block
        .split(/\r?\n/)
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).replace(/^ /, ""))
        .join("\n");
      if (data) yield JSON.parse(data);
    }
    if (done) return;
  }
}

/** Text with citation groups turned into links (text nodes only: nothing is parsed as HTML). */
export function withCitations(text, openResource) {
  const nodes = [];
  let last = 0;
  for (const match of text.matchAll(CITATION_GROUP)) {
    nodes.push(document.createTextNode(text.slice(last, match.index)));
    nodes.push(document.createTextNode("["));
    match[1].match(REFERENCE).forEach((ref, i) => {
      if (i) nodes.push(document.createTextNode(", "));
      nodes.push(citationLink(ref, openResource));
    });
    nodes.push(document.createTextNode("]"));
    last = match.index + match[0].length;
  }
  nodes.push(document.createTextNode(text.slice(last)));
  return nodes;
}

function citationLink(ref, openResource) {
  return el("a", {
    href: "#",
    class: "citation",
    testid: "citation",
    "data-reference": ref,
    text: ref,
    onclick: (event) => {
      event.preventDefault();
      openResource(ref);
    },
  });
}

function pretty(content) {
  try {
    return JSON.stringify(JSON.parse(content), null, 2);
  } catch {
    return String(content);
  }
}

/** Every "Type/id" reference a tool result names (its citations), in order, once each. */
function referencesIn(content) {
  return [...new Set(String(content).match(REFERENCE) || [])];
}

export class ChatPanel {
  constructor({ log, form, input, send, openResource }) {
    this.log = log;
    this.input = input;
    this.send = send;
    this.openResource = openResource;
    this.threadId = randomId();
    this.messages = [];
    this.busy = false;
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const question = input.value.trim();
      if (question && !this.busy) {
        input.value = "";
        this.ask(question);
      }
    });
  }

  add(node) {
    this.log.append(node);
    node.scrollIntoView({ block: "end" });
    return node;
  }

  ask(question) {
    const message = { id: randomId(), role: "user", content: question };
    this.messages.push(message);
    this.add(el("div", { class: "msg user", testid: "chat-user", text: question }));
    return this.run({});
  }

  async run(forwardedProps) {
    this.busy = true;
    this.send.disabled = true;
    const input = {
      threadId: this.threadId,
      runId: randomId(),
      state: {},
      messages: this.messages,
      tools: [],
      context: [],
      forwardedProps,
    };
    const texts = new Map();
    const calls = new Map();
    try {
      const response = await postForStream("/api/agent", input);
      for await (const event of sseEvents(response.body)) this.handle(event, texts, calls);
    } catch (error) {
      this.add(el("div", { class: "msg error", testid: "chat-error", text: `The chat failed: ${error.message}` }));
    } finally {
      this.busy = false;
      this.send.disabled = false;
    }
  }

  handle(event, texts, calls) {
    switch (event.type) {
      case "TEXT_MESSAGE_START": {
        const body = el("span", { class: "text" });
        const node = this.add(el("div", { class: "msg assistant", testid: "chat-answer" }, body));
        texts.set(event.messageId, { node, body, text: "" });
        break;
      }
      case "TEXT_MESSAGE_CONTENT": {
        let entry = texts.get(event.messageId);
        if (!entry) {
          this.handle({ type: "TEXT_MESSAGE_START", messageId: event.messageId }, texts, calls);
          entry = texts.get(event.messageId);
        }
        entry.text += event.delta;
        clear(entry.body).append(...withCitations(entry.text, this.openResource));
        break;
      }
      case "TEXT_MESSAGE_END": {
        const entry = texts.get(event.messageId);
        if (entry) {
          entry.node.setAttribute("data-done", "");
          this.messages.push({ id: event.messageId, role: "assistant", content: entry.text });
        }
        break;
      }
      case "TOOL_CALL_START": {
        const args = el("pre", { class: "args" });
        const node = this.add(
          el("details", { class: "tool", testid: "tool-call", "data-tool": event.toolCallName },
            el("summary", { text: `Tool: ${event.toolCallName}` }), args),
        );
        calls.set(event.toolCallId, { node, args, raw: "" });
        break;
      }
      case "TOOL_CALL_ARGS": {
        const call = calls.get(event.toolCallId);
        if (call) {
          call.raw += event.delta;
          call.args.textContent = call.raw;
        }
        break;
      }
      case "TOOL_CALL_END": {
        const call = calls.get(event.toolCallId);
        if (call) call.args.textContent = pretty(call.raw);
        break;
      }
      case "TOOL_CALL_RESULT": {
        const call = calls.get(event.toolCallId);
        if (!call) break;
        const refs = referencesIn(event.content);
        const cited = el("div", { class: "citation-list" }, refs.length ? "Cites: " : "");
        refs.forEach((ref, i) => cited.append(i ? ", " : "", citationLink(ref, this.openResource)));
        call.node.append(el("pre", { class: "result", testid: "tool-result", text: pretty(event.content) }), cited);
        call.node.setAttribute("data-done", "");
        break;
      }
      case "RUN_FINISHED": {
        // The chat's own checks of its answer (citations removed, numbers no tool returned).
        const flags = (event.result && event.result.flags) || [];
        const last = [...texts.values()].pop();
        if (flags.length && last) last.node.append(el("span", { class: "flags", testid: "chat-flags", text: flags.join("; ") }));
        if (event.outcome && event.outcome.type === "interrupt") this.interrupted(event.outcome.interrupts || []);
        break;
      }
      case "RUN_ERROR":
        this.add(el("div", { class: "msg error", testid: "chat-error", text: event.message || "The chat failed." }));
        break;
      default:
        break;
    }
  }

  /** A write waits for confirmation (e.g. "save this as a note"): ask, then resume the thread. */
  interrupted(interrupts) {
    // The proposal itself streamed as the answer above; the message is kept for screen readers.
    const described = interrupts.map((i) => i.message || "").filter(Boolean).join(" ");
    const box = el(
      "div",
      { class: "msg interrupt", testid: "chat-interrupt", "aria-description": described || null },
      el("span", { text: "Save the proposed note to the patient's record?" }),
    );
    const decide = (resume) => () => {
      for (const button of box.querySelectorAll("button")) button.disabled = true;
      this.run({ command: { resume } });
    };
    box.append(
      el("button", { type: "button", testid: "interrupt-approve", text: "Save", onclick: decide("approve") }),
      el("button", { type: "button", class: "secondary", testid: "interrupt-reject", text: "Don't save", onclick: decide("reject") }),
    );
    this.add(box);
  }
}
