// Kefu console: the inbox and the conversation view. Live updates (Server-Sent Events), the composer, canned
// responses and agent assist inserts, keyboard shortcuts. No inline scripts: the console's CSP forbids them.
"use strict";
(() => {
  const $ = (selector, root = document) => root.querySelector(selector);
  const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));
  const typing = (el) => el && (el.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(el.tagName));

  // --- the transcript -----------------------------------------------------------------------------------------
  const transcript = () => $("#transcript");
  const nearBottom = (list) => list.scrollHeight - list.scrollTop - list.clientHeight < 120;
  const toBottom = () => { const list = transcript(); if (list) list.scrollTop = list.scrollHeight; };
  const lastId = () => Math.max(0, ...$$("#transcript > li[data-id]").map((li) => Number(li.dataset.id)));

  function dedupe() {  // a reply arrives twice (its own response, then the live update): keep the first
    const seen = new Set();
    for (const li of $$("#transcript > li[data-id]")) {
      if (seen.has(li.dataset.id)) li.remove(); else seen.add(li.dataset.id);
    }
  }

  let fetching = Promise.resolve();
  function fetchNewMessages(conversationId) {
    fetching = fetching.then(async () => {
      const list = transcript();
      if (!list) return;
      const stick = nearBottom(list);
      const response = await fetch(`/conversations/${conversationId}/messages?after=${lastId()}`,
        { headers: { "HX-Request": "true" }, credentials: "same-origin" });
      if (!response.ok) return;
      const template = document.createElement("template");
      template.innerHTML = await response.text();
      for (const li of $$("li[data-id]", template.content)) {
        if (!$(`#transcript > li[data-id="${li.dataset.id}"]`)) {
          list.append(li);
          if (window.htmx) window.htmx.process(li);
        }
      }
      if (stick) toBottom();
    }).catch(() => {});
  }

  function refreshPanel(conversationId) {
    const panel = $("#ticket-panel");
    if (!panel || !window.htmx) return;
    if (panel.contains(document.activeElement) && typing(document.activeElement)) return;  // not mid-choice
    window.htmx.ajax("GET", `/conversations/${conversationId}/panel`, { target: "#ticket-panel", swap: "outerHTML" });
  }

  function refreshInbox() {
    if (!window.htmx || !$("#inbox-live")) return;
    window.htmx.ajax("GET", window.location.pathname + window.location.search,
      { target: "#inbox-live", swap: "innerHTML" });
  }

  // --- live updates -------------------------------------------------------------------------------------------
  function debounce(fn, ms) {
    let timer = null;
    return () => { clearTimeout(timer); timer = setTimeout(fn, ms); };
  }

  function connect(root) {
    if (!window.EventSource) return;
    const state = $("[data-live-state]");
    const say = (text, on) => { if (state) { state.textContent = text; state.classList.toggle("is-live", on); } };
    const source = new EventSource(root.dataset.liveSrc);
    source.addEventListener("open", () => say("● Live", true));
    source.addEventListener("error", () => say(source.readyState === EventSource.CLOSED ? "Live updates off" : "Reconnecting…", false));
    if (root.dataset.liveRefresh === "inbox") {
      const refresh = debounce(refreshInbox, 700);
      source.addEventListener("ticket", refresh);
      source.addEventListener("message", refresh);
    } else {
      const id = root.dataset.conversation;
      source.addEventListener("message", () => fetchNewMessages(id));
      const panel = debounce(() => refreshPanel(id), 300);
      source.addEventListener("ticket", () => { panel(); fetchNewMessages(id); });
    }
    window.addEventListener("pagehide", () => source.close());
  }

  // --- the composer, canned responses, agent assist -----------------------------------------------------------
  function insert(text) {
    const box = $("#reply-text");
    if (!box) return;
    const start = box.selectionStart ?? box.value.length;
    const end = box.selectionEnd ?? box.value.length;
    const before = box.value.slice(0, start);
    const glue = before && !before.endsWith("\n") && !before.endsWith(" ") ? " " : "";
    box.value = before + glue + text + box.value.slice(end);
    const caret = (before + glue + text).length;
    box.focus();
    box.setSelectionRange(caret, caret);
    const canned = box.form && $("details.canned", box.form);
    if (canned) canned.open = false;
  }

  function showAlert(text) {
    const alert = $("#live-alert");
    if (!alert) return;
    alert.textContent = text || "That did not work. Try again.";
    alert.hidden = false;
    clearTimeout(showAlert.timer);
    showAlert.timer = setTimeout(() => { alert.hidden = true; }, 6000);
  }

  // The article an agent inserts from agent assist goes with the reply (the customer's questions the bot missed
  // become its proposed phrasings); emptying the reply box, or sending, forgets it.
  const replyArticle = () => $("[data-reply-article]");

  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-insert]");
    if (!button) return;
    event.preventDefault();
    insert(button.dataset.insert);
    if (button.dataset.article && replyArticle()) replyArticle().value = button.dataset.article;
  });

  document.addEventListener("input", (event) => {
    if (event.target.id === "reply-text" && !event.target.value.trim() && replyArticle()) replyArticle().value = "";
  });

  document.addEventListener("input", (event) => {
    if (!event.target.matches("[data-canned-filter]")) return;
    const words = event.target.value.toLowerCase().trim();
    for (const li of $$(".canned-list > li")) {
      li.hidden = Boolean(words) && !li.dataset.canned.toLowerCase().includes(words);
    }
  });

  document.addEventListener("htmx:afterRequest", (event) => {
    const form = event.detail.elt.closest && event.detail.elt.closest("form[data-composer]");
    if (form && event.detail.successful) {
      form.reset();
      if (replyArticle()) replyArticle().value = "";
      $("#reply-text")?.focus();
    }
  });
  document.addEventListener("htmx:afterSwap", (event) => {
    if (event.detail.target && event.detail.target.id === "transcript") { dedupe(); toBottom(); }
  });
  document.addEventListener("htmx:responseError", (event) => showAlert(event.detail.xhr.responseText));
  document.addEventListener("htmx:sendError", () => showAlert("The console cannot be reached. Check your connection."));

  // --- keys ----------------------------------------------------------------------------------------------------
  document.addEventListener("keydown", (event) => {
    const target = event.target;
    if (target.id === "reply-text" && event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      $("[data-send]")?.click();
      return;
    }
    if (typing(target) || event.ctrlKey || event.metaKey || event.altKey) {
      if (event.key === "Escape" && typing(target)) target.blur();
      return;
    }
    const rows = $$("tr[data-row]");
    if (rows.length && ["j", "k", "Enter"].includes(event.key)) {
      let at = rows.findIndex((row) => row.classList.contains("is-selected"));
      if (event.key === "Enter") {
        if (at >= 0) $("a[data-open]", rows[at])?.click();
        return;
      }
      rows[at]?.classList.remove("is-selected");
      at = event.key === "j" ? Math.min(rows.length - 1, at + 1) : Math.max(0, at - 1);
      rows[at].classList.add("is-selected");
      rows[at].scrollIntoView({ block: "nearest" });
      event.preventDefault();
    } else if (event.key === "r" && $("#reply-text")) {
      event.preventDefault();
      $("#reply-text").focus();
    }
  });

  document.addEventListener("DOMContentLoaded", () => {
    toBottom();
    const root = $("[data-live-src]");
    if (root) connect(root);
  });
})();
