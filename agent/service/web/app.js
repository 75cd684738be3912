// ChartAgent's SMART app (one page). It runs after the SMART callback: the browser holds only the
// session cookie; the patient and the CSRF token come from GET /api/session, never from the URL.

import { ApiError, getJson, postJson, setCsrf } from "./api.js";
import { ChatPanel, withCitations } from "./chat.js";
import { trendChart } from "./chart.js";
import { aiLabel, byId, clear, el, formatTime, statusBadge } from "./dom.js";

const ui = {};
let patientId = null;
// Outcomes of this page's approvals and rejections, shown while the lists refresh around them.
const decided = new Map();

function notice(text, isError = false) {
  ui.notice.textContent = text;
  ui.notice.classList.toggle("error", isError);
  ui.notice.hidden = !text;
}

function failed(error) {
  if (error instanceof ApiError && error.status === 401) {
    notice("Your session has ended. Launch ChartAgent again from the EHR.", true);
    ui.main.hidden = true;
  } else {
    notice(error.message || String(error), true);
  }
}

const patientPath = (suffix) => `/api/patients/${encodeURIComponent(patientId)}${suffix}`;

function splitReference(reference) {
  const [type, id] = String(reference).split("/");
  return { type, id };
}

async function openResource(reference) {
  const { type, id } = splitReference(reference);
  try {
    const resource = await getJson(patientPath(`/resources/${encodeURIComponent(type)}/${encodeURIComponent(id)}`));
    ui.resourceTitle.textContent = reference;
    ui.resourceJson.textContent = JSON.stringify(resource, null, 2);
    if (!ui.resourceDialog.open) ui.resourceDialog.showModal();
  } catch (error) {
    failed(error);
  }
}

function renderBanner(view) {
  const show = Boolean(view.need_patient_banner && view.patient);
  ui.banner.hidden = !show;
  if (!show) return;
  ui.banner.querySelector("[data-testid=banner-name]").textContent = view.patient.name || "Name not recorded";
  ui.banner.querySelector("[data-testid=banner-birthdate]").textContent = view.patient.birthDate || "unknown";
  ui.banner.querySelector("[data-testid=banner-sex]").textContent = view.patient.gender || "unknown";
}

function formLinks(forms) {
  const links = (forms || []).filter((f) => f.url).map((f) =>
    el("a", { href: f.url, target: "_blank", rel: "noopener", text: f.title || f.contentType || "attachment" }),
  );
  return links.length ? el("div", { class: "forms" }, "Attached: ", ...links) : null;
}

const LONG_SUMMARY = 500;

function renderSummary(summary) {
  clear(ui.summary);
  if (!summary) {
    ui.summary.append(el("p", { class: "empty", text: "No AI summary yet. Use Summarize now." }));
    return;
  }
  ui.summary.setAttribute("data-reference", summary.reference || "");
  const conclusion = el("p", { class: "conclusion", testid: "summary-text" }, ...withCitations(summary.conclusion || "", openResource));
  ui.summary.append(
    el("div", {}, statusBadge(summary.status), " ", aiLabel(), " ", el("span", { class: "meta", text: formatTime(summary.issued) })),
    conclusion,
    formLinks(summary.presentedForm),
  );
  // A long narrative starts folded to its first lines, so the rest of the view stays in sight.
  if ((summary.conclusion || "").length > LONG_SUMMARY) {
    conclusion.classList.add("folded");
    const toggle = el("button", {
      type: "button",
      class: "secondary",
      testid: "summary-toggle",
      text: "Show the whole summary",
      onclick: () => {
        const folded = conclusion.classList.toggle("folded");
        toggle.textContent = folded ? "Show the whole summary" : "Show less";
      },
    });
    conclusion.after(toggle);
  }
}

// Reports (the summary, imaging reads) come first; the many single values (trends, values read
// from PDFs) wait in a collapsed group so that the page stays short.
let observationsOpen = false;

function renderPending(pending) {
  const items = [...(pending || [])];
  const listed = new Set(items.map((item) => item.reference));
  const entries = items.map((item) => [item, null]);
  for (const [reference, outcome] of decided) if (!listed.has(reference)) entries.push([outcome.item, outcome]);
  const isReport = ([item]) => item.resourceType !== "Observation";
  const reports = entries.filter(isReport);
  const values = entries.filter((entry) => !isReport(entry));

  clear(ui.pending);
  if (!entries.length) {
    ui.pending.append(el("p", { class: "empty", text: "Nothing waits for review." }));
    return;
  }
  if (reports.length) ui.pending.append(el("ul", { class: "pending" }, ...reports.map(([item, outcome]) => pendingItem(item, outcome))));
  if (values.length) {
    const waiting = values.filter(([, outcome]) => !outcome).length;
    const group = el(
      "details",
      { class: "pending-more", testid: "pending-values", open: observationsOpen },
      el("summary", { text: `${waiting} single results (trends, values read from PDFs) waiting for review` }),
      el("ul", { class: "pending" }, ...values.map(([item, outcome]) => pendingItem(item, outcome))),
    );
    group.addEventListener("toggle", () => {
      observationsOpen = group.open;
    });
    ui.pending.append(group);
  }
}

function pendingItem(item, outcome = null) {
  const li = el(
    "li",
    { testid: "pending-item", "data-reference": item.reference },
    el("span", { class: "title" }, item.title || item.resourceType || item.reference, " ", el("span", { class: "meta", text: formatTime(item.issued) })),
    aiLabel(),
  );
  if (outcome) {
    li.append(statusBadge(outcome.status), el("span", { class: "outcome", testid: "pending-outcome", text: outcome.text }));
    return li;
  }
  li.append(
    statusBadge(item.status),
    el("button", { type: "button", text: "Approve", onclick: () => decide(li, item, "approve") }),
    el("button", { type: "button", class: "reject", text: "Reject", onclick: () => askReason(li, item) }),
  );
  return li;
}

async function decide(li, item, action, reason = null) {
  for (const button of li.querySelectorAll("button")) button.disabled = true;
  const { type, id } = splitReference(item.reference);
  const path = `/api/results/${encodeURIComponent(type)}/${encodeURIComponent(id)}/${action}`;
  try {
    const result = await postJson(path, action === "reject" ? { reason } : {});
    const status = (result && result.status) || (action === "approve" ? "final" : "entered-in-error");
    const text = action === "approve" ? "Approved" : "Rejected";
    decided.set(item.reference, { item, status, text });
    li.replaceWith(pendingItem(item, decided.get(item.reference)));
    await loadView();
  } catch (error) {
    for (const button of li.querySelectorAll("button")) button.disabled = false;
    failed(error);
  }
}

function askReason(li, item) {
  const dialog = ui.rejectDialog;
  dialog.querySelector(".reject-target").textContent = item.title || item.reference;
  ui.rejectReason.value = "";
  dialog.onclose = () => {
    const reason = ui.rejectReason.value.trim();
    if (dialog.returnValue === "confirm" && reason) decide(li, item, "reject", reason);
  };
  dialog.returnValue = "";
  dialog.showModal();
}

// Notes an MCP client proposed for this patient (agent/service/proposal_api.py): each waits for a
// person to write it to the chart or discard it.
function proposalItem(proposal) {
  const sources = proposal.sources || [];
  const li = el(
    "li",
    { class: "proposal", testid: "proposal", "data-proposal": proposal.id },
    el("p", { class: "conclusion", testid: "proposal-text", text: proposal.text }),
    el("div", { class: "meta" }, aiLabel(), ` Proposed by ${proposal.proposer}, ${formatTime(proposal.proposed_at)}`),
    sources.length ? el("div", { class: "citation-list" }, "Cites: ", ...withCitations(`[${sources.join(", ")}]`, openResource)) : null,
  );
  li.append(
    el("button", { type: "button", text: "Write to chart", onclick: () => decideProposal(li, proposal, "write") }),
    el("button", { type: "button", class: "reject", text: "Discard", onclick: () => decideProposal(li, proposal, "discard") }),
  );
  return li;
}

/** A proposal's line once it waits no more: its buttons gone, what happened in their place. */
function settleProposal(li, text) {
  for (const button of li.querySelectorAll("button")) button.remove();
  li.append(el("span", { class: "outcome", testid: "proposal-outcome", text }));
}

async function decideProposal(li, proposal, action) {
  const buttons = [...li.querySelectorAll("button")];
  for (const button of buttons) button.disabled = true;
  try {
    const result = await postJson(`/api/proposals/${encodeURIComponent(proposal.id)}/${action}`);
    const text = action === "write"
      ? `Written to the chart as ${result.reference} (AI-generated, preliminary)`
      : "Discarded: nothing was written";
    settleProposal(li, text);
  } catch (error) {
    for (const button of buttons) button.disabled = false;
    failed(error);
  }
}

// The proposals this page shows, by id: a refresh adds the new ones and leaves those decided here
// as they are; one that stopped waiting meanwhile (another person decided it, or it expired) says so.
const shownProposals = new Map();
const PROPOSALS_REFRESH_MS = 60_000;

async function loadProposals() {
  try {
    const { proposals } = await getJson(patientPath("/proposals"));
    const waiting = new Set(proposals.map((p) => p.id));
    for (const [id, li] of shownProposals) {
      // Waiting still, decided here already, or being decided here now (its buttons disabled).
      if (waiting.has(id) || li.querySelector("[data-testid=proposal-outcome], button:disabled")) continue;
      settleProposal(li, "No longer waiting: decided elsewhere, or expired");
    }
    for (const proposal of proposals) {
      if (shownProposals.has(proposal.id)) continue;
      const li = proposalItem(proposal);
      shownProposals.set(proposal.id, li);
      ui.proposals.append(li);
    }
    ui.proposalsCard.hidden = shownProposals.size === 0;
  } catch (error) {
    failed(error);
  }
}

/** New proposals show up while the app is open: when the clinician comes back to it, and every minute. */
function watchProposals() {
  const refresh = () => {
    if (document.visibilityState === "visible") loadProposals();
  };
  window.addEventListener("focus", refresh);
  document.addEventListener("visibilitychange", refresh);
  setInterval(refresh, PROPOSALS_REFRESH_MS);
}

function renderTrends(trends) {
  clear(ui.trends);
  if (!trends || !trends.length) {
    ui.trends.append(el("p", { class: "empty", text: "No lab trends yet." }));
    return;
  }
  for (const trend of trends) ui.trends.append(trendChart(trend, { tip: ui.tip, onPoint: openResource }));
}

/** The PDF the value was read from, opened at its page; null when the document is not at hand. */
function pdfLink(value) {
  let base = value.url;
  if (!base && value.document) {
    const { type, id } = splitReference(value.document);
    base = patientPath(`/attachments/${encodeURIComponent(type)}/${encodeURIComponent(id)}/0`);
  }
  if (!base) return null;
  const page = Number(value.page) || 1;
  return el("a", {
    href: `${base.split("#")[0]}#page=${page}`,
    target: "_blank",
    rel: "noopener",
    testid: "pdf-link",
    text: `Open PDF, page ${page}`,
  });
}

function boxNote(value) {
  if (!Array.isArray(value.bbox) || value.bbox.length !== 4) return null;
  const [x0, y0, x1, y1] = value.bbox.map((n) => Math.round(Number(n)));
  return el("span", { class: "box-note", testid: "box-note", text: `Read from the box (${x0}, ${y0})–(${x1}, ${y1}) pt, top left origin` });
}

const PDF_ROWS_SHOWN = 10;

function pdfRow(value) {
  return el(
    "tr",
    { testid: "pdf-value", "data-reference": value.reference || "" },
    el("td", { text: value.analyte || "" }),
    el("td", { text: `${value.value ?? ""} ${value.unit || ""}`.trim() }),
    el("td", {}, pdfLink(value) || "source document not available", boxNote(value)),
  );
}

function renderPdfValues(values) {
  clear(ui.pdfValues);
  if (!values || !values.length) {
    ui.pdfValues.append(el("tr", {}, el("td", { colspan: 3, class: "empty", text: "No values read from PDFs." })));
    return;
  }
  ui.pdfValues.append(...values.slice(0, PDF_ROWS_SHOWN).map(pdfRow));
  if (values.length > PDF_ROWS_SHOWN) {
    const more = el("button", {
      type: "button",
      class: "secondary",
      text: `Show all ${values.length} values`,
      onclick: () => {
        moreRow.remove();
        ui.pdfValues.append(...values.slice(PDF_ROWS_SHOWN).map(pdfRow));
      },
    });
    const moreRow = el("tr", {}, el("td", { colspan: 3 }, more));
    ui.pdfValues.append(moreRow);
  }
}

/** A box as [x0, y0, x1, y1] in the pixels of the image read. */
function boxText(box) {
  const [x0, y0, x1, y1] = (box.bbox || []).map((n) => Math.round(Number(n)));
  const where = box.instance ? ` of instance ${box.instance}` : "";
  return `${box.label}: x ${x0}–${x1}, y ${y0}–${y1} (pixels${where})`;
}

function renderImaging(reports) {
  clear(ui.imaging);
  if (!reports || !reports.length) {
    ui.imaging.append(el("p", { class: "empty", text: "No imaging reports." }));
    return;
  }
  for (const report of reports) {
    const boxes = (report.boxes || []).map((b) =>
      el("li", { text: boxText(b) }),
    );
    ui.imaging.append(
      el(
        "article",
        { class: "imaging-report", testid: "imaging-report", "data-reference": report.reference || "" },
        el("div", {}, statusBadge(report.status), " ", aiLabel()),
        el("p", { class: "conclusion", text: report.conclusion || "" }),
        report.overlay
          ? el("img", { class: "overlay", testid: "imaging-overlay", src: report.overlay, alt: "Localized structures drawn on the image read (AI-generated)" })
          : null,
        boxes.length ? el("ul", { class: "boxes" }, ...boxes) : null,
      ),
    );
  }
}

async function loadView() {
  const view = await getJson(patientPath("/summary"));
  renderBanner(view);
  renderSummary(view.summary);
  renderPending(view.pending);
  renderTrends(view.trends);
  renderPdfValues(view.pdf_values);
  renderImaging(view.imaging);
  ui.main.setAttribute("data-loaded", "");
}

function renderRun(run) {
  ui.run.hidden = false;
  ui.run.classList.toggle("failed", run.status === "failed");
  const label = { running: "Summarizing…", done: "Summary updated", failed: "The run failed" }[run.status] || run.status;
  ui.runStatus.textContent = run.error ? `${label}: ${run.error}` : label;
  ui.run.setAttribute("data-status", run.status);
  // One entry per node in order of first appearance; fan-out branches (one per document) counted.
  const counts = new Map();
  for (const step of run.steps || []) counts.set(step.node, (counts.get(step.node) || 0) + 1);
  const steps = [...counts].map(([node, n]) => el("li", { text: `${node.replaceAll("_", " ")}${n > 1 ? ` ×${n}` : ""}` }));
  clear(ui.runSteps).append(...steps);
}

async function summarizeNow() {
  ui.summarize.disabled = true;
  try {
    const { run_id: runId } = await postJson(patientPath("/summarize"));
    let run = { status: "running", steps: [] };
    renderRun(run);
    while (run.status === "running") {
      await new Promise((resolve) => setTimeout(resolve, 600));
      try {
        run = await getJson(`/api/runs/${encodeURIComponent(runId)}`);
      } catch (error) {
        // A run lives in the server process that started it: after a restart, or on another
        // replica, its progress is gone, not its writes (idempotent: a new run completes them).
        if (!(error instanceof ApiError && error.status === 404)) throw error;
        run = { status: "failed", steps: run.steps, error: "this server no longer knows the run; what the run wrote stays, and Summarize now again completes it" };
      }
      renderRun(run);
    }
    if (run.status === "done") await loadView();
  } catch (error) {
    failed(error);
  } finally {
    ui.summarize.disabled = false;
  }
}

async function start() {
  Object.assign(ui, {
    notice: byId("notice"),
    main: byId("main"),
    banner: byId("banner"),
    who: byId("who"),
    summary: byId("summary"),
    summarize: byId("summarize"),
    run: byId("run"),
    runStatus: byId("run").querySelector(".run-status"),
    runSteps: byId("run").querySelector(".run-steps"),
    pending: byId("pending"),
    proposalsCard: byId("proposals-card"),
    proposals: byId("proposals"),
    trends: byId("trends"),
    tip: byId("chart-tip"),
    pdfValues: byId("pdf-values"),
    imaging: byId("imaging"),
    rejectDialog: byId("reject-dialog"),
    rejectReason: byId("reject-reason"),
    resourceDialog: byId("resource-dialog"),
    resourceTitle: byId("resource-title"),
    resourceJson: byId("resource-json"),
  });
  byId("reject-cancel").addEventListener("click", () => ui.rejectDialog.close());
  byId("resource-close").addEventListener("click", () => ui.resourceDialog.close());
  ui.summarize.addEventListener("click", summarizeNow);
  new ChatPanel({
    log: byId("chat-log"),
    form: byId("chat-form"),
    input: byId("chat-input"),
    send: byId("chat-send"),
    openResource,
  });
  try {
    const session = await getJson("/api/session");
    setCsrf(session.csrf);
    patientId = session.patient;
    // fhirUser may be absolute (https://ehr/fhir/Practitioner/1): the relative reference reads better.
    const user = String(session.fhirUser || "").match(/[A-Z][A-Za-z]+\/[^/]+$/);
    ui.who.textContent = user ? `Signed in as ${user[0]}` : "";
    ui.main.hidden = false;
    await Promise.all([loadView(), loadProposals()]);
    watchProposals();
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      notice("No session. Launch ChartAgent from the EHR.", true);
    } else {
      failed(error);
    }
  }
}

start();
