// Lab page: poll the lab's status, count down, and run the browser terminal.
// Served as a static file so the page's Content-Security-Policy can forbid inline script.
"use strict";
(function () {
  const lab = document.getElementById("lab");
  if (!lab) { return; }
  const id = lab.dataset.scenario;
  const shownState = lab.dataset.state;
  const shownScore = lab.dataset.scoreReady === "true";
  let expires = lab.dataset.expires ? Date.parse(lab.dataset.expires) : NaN;
  const finished = ["failed", "expired", "deleted"];

  function showRemaining() {
    const out = document.getElementById("remaining");
    if (!out || isNaN(expires)) { return; }
    const left = Math.max(0, Math.floor((expires - Date.now()) / 1000));
    out.textContent = Math.floor(left / 60) + " min " + (left % 60) + " s";
    const extend = document.getElementById("extend");
    if (extend) { extend.hidden = left > 600; }
  }

  async function poll() {
    try {
      const resp = await fetch("/lab/" + encodeURIComponent(id) + "/status",
                               { credentials: "same-origin", cache: "no-store" });
      if (resp.ok) {
        const body = await resp.json();
        if (body.expires_at) { expires = Date.parse(body.expires_at); }
        if (body.state !== shownState || body.score_ready !== shownScore) {
          window.location.reload();
          return;
        }
      }
    } catch (err) { /* transient: try again on the next tick */ }
    if (!finished.includes(shownState) && !(shownState === "completed" && shownScore)) {
      window.setTimeout(poll, 1500);
    }
  }

  // One terminal per host the template opens to the learner (a tab each). A tab's terminal
  // connects when the tab is first shown, so unseen tabs hold none of the lab's terminals.
  function startTerminal(panel, focus) {
    const host = panel.dataset.host;
    const box = panel.querySelector(".terminal");
    const status = panel.querySelector(".term-status");
    if (!box || typeof Terminal === "undefined") { return; }
    status.textContent = "Connecting…";
    const term = new Terminal({ cursorBlink: true, fontSize: 14, lineHeight: 1.15, scrollback: 5000,
      fontFamily: "ui-monospace, 'DejaVu Sans Mono', monospace",
      theme: { background: "#0f1720" } });
    const fit = new FitAddon.FitAddon();
    term.loadAddon(fit);
    term.open(box);
    fit.fit();
    const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    const url = scheme + window.location.host + "/v1/scenarios/" + encodeURIComponent(id) +
      "/terminal?rows=" + term.rows + "&cols=" + term.cols + "&host=" + encodeURIComponent(host);
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    const encoder = new TextEncoder();
    let opened = false;
    let closedWith = null;  // {error, message} from the server's "closed" control frame
    function closedMessage(text) {
      try {
        const body = JSON.parse(text);
        if (body && body.type === "closed" && typeof body.message === "string") { return body; }
      } catch (err) { /* not a control frame */ }
      return null;
    }
    ws.onmessage = function (ev) {
      if (typeof ev.data === "string") {
        const control = closedMessage(ev.data);
        if (control) { closedWith = control; return; }
        if (ev.data.startsWith('{"type": "attached"')) { return; }  // which shell: not output
        term.write(ev.data);
      } else {
        term.write(new Uint8Array(ev.data));
      }
    };
    ws.onopen = function () {
      opened = true;
      status.textContent = "Connected to the " + host + " host.";
      if (focus) { term.focus(); }
    };
    ws.onclose = function (ev) {
      // The server says why (terminal limit, idle, grading) in a control frame and in the
      // close reason of a 4xxx code; show it in the page, not only in the terminal.
      let message = closedWith ? closedWith.message : "";
      if (!message && ev.code >= 4000 && ev.code < 5000) { message = ev.reason; }
      if (message) {
        status.textContent = message;
        status.classList.remove("muted");
        status.classList.add("error");
        status.setAttribute("role", "alert");
        status.dataset.error = closedWith ? closedWith.error : String(ev.code);
        term.write("\r\n\x1b[1;33m" + message + "\x1b[0m\r\n");
      } else {
        status.textContent = opened ? "Terminal disconnected." :
          "The terminal is not available (the lab may have stopped running).";
      }
    };
    term.onData(function (data) {
      if (ws.readyState === WebSocket.OPEN) { ws.send(encoder.encode(data)); }
    });
    term.onResize(function (size) {
      if (ws.readyState === WebSocket.OPEN) {
        ws.send(JSON.stringify({ type: "resize", rows: size.rows, cols: size.cols }));
      }
    });
    window.addEventListener("resize", function () { if (!panel.hidden) { fit.fit(); } });
    panel.forgeFit = fit;
    panel.forgeTerm = term;
  }

  function showPanel(panel, focus) {
    if (!panel.forgeTerm) { startTerminal(panel, focus); }
    else { panel.forgeFit.fit(); }
  }

  function setUpTabs() {
    const panels = Array.from(document.querySelectorAll(".term-panel"));
    if (panels.length === 0) { return; }
    showPanel(panels[0], true);
    const tabs = Array.from(document.querySelectorAll('[role="tab"][data-host]'));
    function select(tab) {
      tabs.forEach(function (t) {
        const on = t === tab;
        t.setAttribute("aria-selected", on ? "true" : "false");
        t.tabIndex = on ? 0 : -1;
        const panel = document.getElementById(t.getAttribute("aria-controls"));
        panel.hidden = !on;
        if (on) { showPanel(panel, false); }
      });
      tab.focus();
    }
    tabs.forEach(function (tab, i) {
      tab.addEventListener("click", function () { select(tab); });
      tab.addEventListener("keydown", function (ev) {
        const moves = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 };
        if (!(ev.key in moves)) { return; }
        ev.preventDefault();
        select(tabs[(moves[ev.key] + tabs.length) % tabs.length]);
      });
    });
  }

  showRemaining();
  window.setInterval(showRemaining, 1000);
  setUpTabs();
  window.setTimeout(poll, 1500);
})();
