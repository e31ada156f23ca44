// Lab page terminals: one xterm.js per host the learner may open (a tab each), which
// reconnects by itself after a drop, copies and pastes the way people expect, fits its box
// (also in full screen, terminal_fullscreen.js), and lets a keyboard user leave it
// (Ctrl+Shift+X).
// A static file, so the page's Content-Security-Policy can forbid inline script.
"use strict";
(function () {
  const lab = document.getElementById("lab");
  const section = document.getElementById("term-section");
  if (!lab || !section || typeof Terminal === "undefined") { return; }
  const id = lab.dataset.scenario;
  const FIRST_DELAY_MS = 500;
  const MAX_DELAY_MS = 8000;
  const MAX_ATTEMPTS = 10;  // then stop; "Reconnect now", the network or the tab restarts it
  const STABLE_MS = 10000;  // a connection open this long starts the attempt count afresh
  const FINAL_ERRORS = ["lab_sealed", "lab_not_running", "signed_out"];  // no button
  const RETRY_ERRORS = ["terminal_ended"];  // the shell exited as we attached: open a new one
  const SR_KEY = "forge.terminal.screenReader";
  const MAC = /Mac|iPhone|iPad/.test(navigator.platform || navigator.userAgent || "");
  const encoder = new TextEncoder();
  const note = document.getElementById("term-note");
  const srToggle = document.getElementById("term-sr");
  const fullButton = document.getElementById("term-fullscreen");
  const started = [];
  let leaving = false;
  let noteTimer = 0;

  function say(text) {
    if (!note) { return; }
    note.textContent = text;
    window.clearTimeout(noteTimer);
    noteTimer = window.setTimeout(function () { note.textContent = ""; }, 4000);
  }

  function screenReaderWanted() {
    try {
      const saved = window.localStorage.getItem(SR_KEY);
      if (saved !== null) { return saved === "on"; }
    } catch (err) { /* storage disabled: keep the page's default */ }
    return srToggle ? srToggle.checked : true;
  }

  // Copy through the Clipboard API where the page may (https, localhost), else the browser's
  // own copy command, which xterm.js answers with the selection.
  function copy(term) {
    const text = term.getSelection();
    if (!text) { return; }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { say("Copied to the clipboard."); },
        function () { say("The browser did not allow copying; use right-click → Copy."); });
    } else if (document.execCommand("copy")) {
      say("Copied to the clipboard.");
    }
  }

  function letter(ev) {
    if (/^[a-z]$/i.test(ev.key)) { return ev.key.toLowerCase(); }
    return ev.code && ev.code.startsWith("Key") ? ev.code.slice(3).toLowerCase() : "";
  }

  // Where Ctrl+Shift+X sends focus: the lab's Submit button, or (full screen) the exit button.
  function leaveTerminal() {
    const target = section.classList.contains("is-fullscreen") ? fullButton :
      document.querySelector("#submit button, #submit [type=submit]") || fullButton;
    if (target) { target.focus(); }
  }

  function keys(t) {
    return function (ev) {
      if (ev.type !== "keydown") { return true; }
      const key = letter(ev);
      const ctrl = ev.ctrlKey && !ev.altKey && !ev.metaKey;
      if (ctrl && ev.shiftKey && key === "x") {  // the focus escape
        ev.preventDefault();
        leaveTerminal();
        return false;
      }
      if (ctrl && ev.shiftKey && key === "c") { ev.preventDefault(); copy(t.term); return false; }
      if (ctrl && ev.shiftKey && key === "v") { return false; }  // the browser pastes (paste event)
      // Plain Ctrl+V pastes too, as in the terminals of Windows and Linux desktops: a
      // newcomer presses it first, and the ^V it sent made the next Enter type ^M. On a
      // Mac (⌘V pastes there) Ctrl+V stays the shell's.
      if (ctrl && !ev.shiftKey && key === "v" && !MAC) { return false; }
      if (ctrl && !ev.shiftKey && key === "c" && t.term.hasSelection()) {
        ev.preventDefault();
        copy(t.term);
        t.term.clearSelection();
        return false;  // a selection is copied, not interrupted
      }
      if (ev.metaKey && !ev.ctrlKey && (key === "c" || key === "v")) { return false; }  // macOS
      return true;
    };
  }

  // In screen-reader mode xterm.js reads keys only from keydown and ignores text that arrives
  // as an input event alone (dictation, on-screen keyboards, pasting tools): pass that on.
  function keepTextInput(t) {
    const area = t.term.textarea;
    if (!area) { return; }
    let sent = "";  // the character xterm.js sent for the last key press, until its input
    area.addEventListener("keydown", function (ev) {
      sent = ev.keyCode !== 229 && !ev.isComposing && ev.key.length === 1 ? ev.key : "";
    }, true);
    const forget = function () { sent = ""; };
    area.addEventListener("keyup", forget, true);
    area.addEventListener("blur", forget);
    area.addEventListener("input", function (ev) {
      const already = sent !== "" && ev.data === sent;
      sent = "";
      if (t.term.options.screenReaderMode && !already && !ev.isComposing &&
          ev.inputType === "insertText" && ev.data) {
        t.term.input(ev.data, true);
      }
    });
  }

  function setStatus(t, text, error) {
    t.status.textContent = text;
    t.status.classList.toggle("error", Boolean(error));
    t.status.classList.toggle("muted", !error);
    if (error) { t.status.setAttribute("role", "alert"); t.status.dataset.error = error; }
    else { t.status.removeAttribute("role"); delete t.status.dataset.error; }
  }

  function showBanner(t, text, button) {
    t.bannerText.textContent = text;
    t.reconnect.hidden = !button;
    t.banner.hidden = false;
  }

  function connect(t) {
    window.clearTimeout(t.timer);
    if (t.ws || leaving) { return; }
    const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    const asked = { rows: t.term.rows, cols: t.term.cols };  // the shell's size on attach
    const url = scheme + window.location.host + "/v1/scenarios/" + encodeURIComponent(id) +
      "/terminal?rows=" + asked.rows + "&cols=" + asked.cols + "&host=" +
      encodeURIComponent(t.host);
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    t.ws = ws;
    let closedWith = null;  // {error, message} from the server's "closed" control frame
    let openedAt = 0;
    ws.onmessage = function (ev) {
      if (typeof ev.data !== "string") { t.term.write(new Uint8Array(ev.data)); return; }
      let body = null;
      try { body = JSON.parse(ev.data); } catch (err) { t.term.write(ev.data); return; }
      if (!body || typeof body.type !== "string") { return; }
      if (body.type === "closed" && typeof body.message === "string") { closedWith = body; }
      if (body.type === "attached") {
        t.term.reset();  // the server replays the shell's screen next: do not show it twice
        // A resize while the socket was connecting was not sent (onResize needs it open):
        // the shell has the size of the URL, so send the one the page shows now.
        if (t.term.rows !== asked.rows || t.term.cols !== asked.cols) {
          ws.send(JSON.stringify({ type: "resize", rows: t.term.rows, cols: t.term.cols }));
        }
        if (body.new === true && t.connects > 1) {
          say("Your previous shell had ended: a new shell was started.");
        }
      }
      // other control frames are for newer pages: ignored
    };
    ws.onopen = function () {
      openedAt = Date.now();
      t.connects += 1;
      t.panel.dataset.connects = String(t.connects);
      t.banner.hidden = true;
      setStatus(t, "Connected to the " + t.host + " host.", null);
      if (t.connects > 1) { say("Reconnected to the " + t.host + " host."); }
      if (t.focus) { t.term.focus(); t.focus = false; }
    };
    ws.onclose = function (ev) {
      if (t.ws !== ws) { return; }
      t.ws = null;
      if (leaving) { return; }
      // A deliberate close says why: a "closed" frame and a 44xx code (terminal cap, idle,
      // grading, lab not running). Anything else is a drop: reconnect by ourselves.
      const message = closedWith ? closedWith.message :
        (ev.code >= 4000 && ev.code < 5000 ? ev.reason : "");
      const retry = closedWith && RETRY_ERRORS.includes(closedWith.error);
      if (!retry && (closedWith || (ev.code >= 4400 && ev.code < 4500))) {
        const error = closedWith ? closedWith.error : String(ev.code);
        stop(t, message || "The terminal was closed.", error, !FINAL_ERRORS.includes(error));
        t.term.write("\r\n\x1b[1;33m" + (message || "The terminal was closed.") + "\x1b[0m\r\n");
        return;
      }
      // Attempts count on until a connection has lasted: a shell that dies at once is not
      // reopened forever.
      if (openedAt && Date.now() - openedAt > STABLE_MS) { t.attempts = 0; }
      retryLater(t, message);
    };
  }

  function stop(t, message, error, button) {
    t.final = true;
    window.clearTimeout(t.timer);
    setStatus(t, message, error);
    t.banner.hidden = !button;
    if (button) { showBanner(t, "The terminal is closed.", true); }
  }

  function retryLater(t, why) {
    if (t.final || leaving) { return; }
    window.clearTimeout(t.timer);
    setStatus(t, "Disconnected.", null);
    const prefix = why ? why + " " : "";
    if (navigator.onLine === false) {
      showBanner(t, prefix + "Connection lost — waiting for the network…", true);
      return;  // the "online" event reconnects
    }
    t.attempts += 1;
    if (t.attempts > MAX_ATTEMPTS) {
      showBanner(t, "Connection lost — could not reconnect after " + MAX_ATTEMPTS +
        " attempts. Check your network, then press Reconnect now.", true);
      return;
    }
    showBanner(t, prefix + "Connection lost — reconnecting… (attempt " + t.attempts + " of " +
      MAX_ATTEMPTS + ")", true);
    const delay = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * Math.pow(2, t.attempts - 1));
    t.timer = window.setTimeout(function () { attempt(t); }, delay * (0.75 + Math.random() / 2));
  }

  // Before reconnecting, ask whether there is still something to reconnect to: a signed-out
  // learner or an ended lab gets a plain reason instead of endless retries.
  async function attempt(t) {
    if (t.ws || leaving) { return; }
    let resp = null;
    try {
      resp = await fetch("/lab/" + encodeURIComponent(id) + "/status",
                         { credentials: "same-origin", cache: "no-store", redirect: "manual" });
    } catch (err) { resp = null; /* offline: the connection attempt below fails too */ }
    if (resp && (resp.status === 401 || resp.type === "opaqueredirect")) {  // to sign-in
      stop(t, "You are signed out. Sign in again to use the terminal.", "signed_out", false);
      return;
    }
    if (resp && resp.status === 404) {
      stop(t, "This lab is no longer available.", "lab_not_found", false);
      return;
    }
    if (resp && resp.ok) {
      const body = await resp.json().catch(function () { return null; });
      if (body && body.state && body.state !== "running") {
        stop(t, "The lab is no longer running (" + body.state + ").", "lab_not_running", false);
        return;
      }
    }
    connect(t);
  }

  function reconnectNow(t) {
    if (t.ws) { return; }
    t.final = false;
    t.attempts = 0;
    window.clearTimeout(t.timer);
    showBanner(t, "Reconnecting…", true);
    attempt(t);
  }

  function wake() {
    started.forEach(function (t) {
      if (!t.ws && !t.final) { reconnectNow(t); }
    });
  }

  function fitLater(t) {
    window.cancelAnimationFrame(t.frame);
    t.frame = window.requestAnimationFrame(function () {
      if (!t.panel.hidden && t.box.clientWidth > 0) { t.fit.fit(); }
    });
  }

  // The height of one row of `t`'s screen, in CSS pixels (0 before it is laid out).
  function rowHeight(t) {
    const screen = t.box.querySelector(".xterm-screen");
    return screen && t.term.rows > 0 ? screen.getBoundingClientRect().height / t.term.rows : 0;
  }

  // A finger moved over the terminal scrolls its output back and forth (xterm.js scrolls
  // it for a mouse wheel only, so on a phone a swipe moved the page and earlier output was
  // out of reach); once there is no more output that way, the page scrolls as usual.
  function scrollByTouch(t) {
    let lastY = null;
    let carried = 0;
    t.box.addEventListener("touchstart", function (ev) {
      lastY = ev.touches.length === 1 ? ev.touches[0].clientY : null;
      carried = 0;
    }, { passive: true });
    t.box.addEventListener("touchmove", function (ev) {
      if (lastY === null || ev.touches.length !== 1) { return; }
      const y = ev.touches[0].clientY;
      carried += y - lastY;  // > 0: the finger moves down, back to earlier output
      lastY = y;
      const height = rowHeight(t);
      const buffer = t.term.buffer.active;
      const room = carried > 0 ? buffer.viewportY > 0 : buffer.viewportY < buffer.baseY;
      if (!height || !room) { carried = 0; return; }  // the page's scroll
      if (ev.cancelable) { ev.preventDefault(); }
      const lines = Math.trunc(carried / height);
      if (lines !== 0) {
        t.term.scrollLines(-lines);
        carried -= lines * height;
      }
    }, { passive: false });
    t.box.addEventListener("touchend", function () { lastY = null; });
    t.box.addEventListener("touchcancel", function () { lastY = null; });
  }

  // On a touch screen the key bar is held at the bottom of what the screen shows, over the
  // terminal's last rows: the browser brings the line being typed into sight, just under
  // the bar. While the terminal has the keyboard and shows its latest output, the page
  // (or the full-screen terminal's own box) scrolls so the cursor's row is above the bar.
  function keepCursorInSight(t) {
    if (!keyBar || keyBar.hidden || document.activeElement !== t.term.textarea) { return; }
    const buffer = t.term.buffer.active;
    const height = rowHeight(t);
    const screen = t.box.querySelector(".xterm-screen");
    if (!height || !screen || buffer.viewportY !== buffer.baseY) { return; }
    const cursorBottom = screen.getBoundingClientRect().top + (buffer.cursorY + 1) * height;
    const view = window.visualViewport;
    const shownBottom = view ? view.offsetTop + view.height : window.innerHeight;
    const limit = Math.min(keyBar.getBoundingClientRect().top, shownBottom) - 4;
    if (cursorBottom <= limit) { return; }
    const scroller = section.classList.contains("maximised") ||
      document.fullscreenElement === section ? section : window;
    scroller.scrollBy(0, Math.ceil(cursorBottom - limit));
  }

  function keepCursorInSightLater(t) {
    window.cancelAnimationFrame(t.sightFrame);
    t.sightFrame = window.requestAnimationFrame(function () { keepCursorInSight(t); });
  }

  // A tab's terminal connects when the tab is first shown, so unseen tabs hold none of the
  // lab's terminals.
  function start(panel, focus) {
    const box = panel.querySelector(".terminal");
    if (!box) { return null; }
    const narrow = window.matchMedia("(max-width: 600px)").matches;
    const term = new Terminal({ cursorBlink: true, fontSize: narrow ? 13 : 14, lineHeight: 1.15,
      scrollback: 5000, screenReaderMode: screenReaderWanted(),
      fontFamily: "ui-monospace, 'DejaVu Sans Mono', monospace",
      theme: { background: "#0f1720" } });
    const fit = new FitAddon.FitAddon();
    term.loadAddon(fit);
    term.open(box);
    const t = { panel: panel, host: panel.dataset.host, box: box, term: term, fit: fit,
      status: panel.querySelector(".term-status"), banner: panel.querySelector(".term-banner"),
      bannerText: panel.querySelector(".term-banner-text"),
      reconnect: panel.querySelector(".term-reconnect"), ws: null, timer: 0, frame: 0,
      attempts: 0, connects: 0, final: false, focus: focus, sightFrame: 0 };
    if (term.textarea) { term.textarea.setAttribute("aria-describedby", "term-help"); }
    fit.fit();
    term.attachCustomKeyEventHandler(keys(t));
    keepTextInput(t);
    box.addEventListener("mouseup", function () {  // copy on selection
      window.setTimeout(function () { if (term.hasSelection()) { copy(term); } }, 0);
    });
    term.onData(function (data) { send(t, withCtrl(data)); });
    scrollByTouch(t);
    term.onCursorMove(function () { keepCursorInSightLater(t); });
    if (term.textarea) {
      term.textarea.addEventListener("focus", function () { keepCursorInSightLater(t); });
    }
    term.onResize(function (size) {
      if (t.ws && t.ws.readyState === WebSocket.OPEN) {
        t.ws.send(JSON.stringify({ type: "resize", rows: size.rows, cols: size.cols }));
      }
    });
    t.reconnect.addEventListener("click", function () { reconnectNow(t); });
    if (typeof ResizeObserver !== "undefined") {
      new ResizeObserver(function () { fitLater(t); }).observe(box);
    }
    window.addEventListener("resize", function () { fitLater(t); keepCursorInSightLater(t); });
    setStatus(t, "Connecting…", null);
    started.push(t);
    panel.forgeTerminal = t;
    connect(t);
    return t;
  }

  function send(t, data) {
    if (t.ws && t.ws.readyState === WebSocket.OPEN) { t.ws.send(encoder.encode(data)); }
  }

  // The key bar (touch screens): what a phone keyboard lacks, sent to the shown terminal.
  // Ctrl is sticky: it applies to the next letter typed, then lets go.
  const keyBar = document.getElementById("term-keys");
  const touchHelp = document.getElementById("term-help-touch");
  let ctrlHeld = false;
  const SENT = { esc: "\x1b", tab: "\t", "ctrl-c": "\x03", "ctrl-d": "\x04",
    "|": "|", "/": "/", "-": "-", "~": "~" };
  const ARROWS = { up: "A", down: "B", right: "C", left: "D" };

  function holdCtrl(on) {
    ctrlHeld = on;
    const button = keyBar && keyBar.querySelector('[data-key="ctrl"]');
    if (button) { button.setAttribute("aria-pressed", on ? "true" : "false"); }
  }

  // Ctrl with the next key typed: a letter or @ [ \ ] ^ _ (as a keyboard's Ctrl sends
  // them), Space (NUL); anything else goes as typed. Ctrl lets go either way.
  function withCtrl(data) {
    if (!ctrlHeld) { return data; }
    holdCtrl(false);
    if (data === " ") { return "\x00"; }
    if (!/^[a-zA-Z@[\\\]^_]$/.test(data)) { return data; }
    return String.fromCharCode(data.toUpperCase().charCodeAt(0) - 64);
  }

  function shown() {
    const panel = section.querySelector(".term-panel:not([hidden])");
    return panel ? panel.forgeTerminal : null;
  }

  // Paste on a phone: a terminal has no text field to press and hold. The clipboard is
  // read where the browser allows it (a secure page, the learner's consent); otherwise a
  // field opens to paste into, and its text is sent. At most PASTE_MAX characters, as a
  // paste (bracketed where the shell asked for it).
  const PASTE_MAX = 16384;
  const pasteBox = document.getElementById("paste-box");
  const pasteText = document.getElementById("paste-text");

  function sendPaste(t, text) {
    if (text) { t.term.paste(text.slice(0, PASTE_MAX)); }
    t.term.focus();
  }

  function openPasteBox(t) {
    if (!pasteBox || !pasteText) { return; }
    pasteBox.forgeTerminal = t;
    pasteBox.hidden = false;
    pasteText.value = "";
    pasteText.focus();
  }

  function pasteInto(t) {
    const clip = navigator.clipboard;
    if (!(window.isSecureContext && clip && clip.readText)) { openPasteBox(t); return; }
    // A permission prompt left unanswered must not leave the learner with nothing: after
    // a few seconds the field opens, and a late answer is ignored (never pasted twice).
    let settled = false;
    function settle() {
      if (settled) { return false; }
      settled = true;
      clearTimeout(late);
      return true;
    }
    const late = setTimeout(function () { if (settle()) { openPasteBox(t); } }, 4000);
    clip.readText().then(function (text) {
      if (!settle()) { return; }
      if (text) { sendPaste(t, text); } else { openPasteBox(t); }
    }, function () { if (settle()) { openPasteBox(t); } });
  }

  function setUpPasteBox() {
    if (!pasteBox || !pasteText) { return; }
    function close() {
      const t = pasteBox.forgeTerminal;
      pasteBox.hidden = true;
      pasteText.value = "";
      if (t) { t.term.focus(); }
    }
    document.getElementById("paste-send").addEventListener("click", function () {
      const t = pasteBox.forgeTerminal;
      const text = pasteText.value;
      close();
      if (t) { sendPaste(t, text); }
    });
    document.getElementById("paste-cancel").addEventListener("click", close);
  }

  function setUpKeyBar() {
    if (!keyBar) { return; }
    const touch = window.matchMedia("(pointer: coarse)").matches || navigator.maxTouchPoints > 0;
    keyBar.hidden = !touch;
    if (touchHelp) { touchHelp.hidden = !touch; }
    // Pressing a key must not take the focus from the terminal (the phone keyboard stays).
    keyBar.addEventListener("pointerdown", function (ev) { ev.preventDefault(); });
    keyBar.addEventListener("click", function (ev) {
      const button = ev.target.closest("button[data-key]");
      const t = shown();
      if (!button || !t) { return; }
      const key = button.dataset.key;
      if (key === "ctrl") {
        holdCtrl(!ctrlHeld);
        t.term.focus();
        return;
      }
      if (key === "paste") {
        holdCtrl(false);
        pasteInto(t);
        return;
      }
      holdCtrl(false);  // another key of the bar: Ctrl applies to typed letters only
      if (key in ARROWS) {
        const app = t.term.modes && t.term.modes.applicationCursorKeysMode;
        send(t, (app ? "\x1bO" : "\x1b[") + ARROWS[key]);
      } else if (key in SENT) {
        send(t, SENT[key]);
      }
      t.term.focus();
    });
  }

  function show(panel, focus) {
    if (!panel.forgeTerminal) { start(panel, focus); } else { fitLater(panel.forgeTerminal); }
  }

  function setUpTabs() {
    const panels = Array.from(section.querySelectorAll(".term-panel"));
    if (panels.length === 0) { return; }
    show(panels[0], true);
    const tabs = Array.from(section.querySelectorAll('[role="tab"][data-host]'));
    function select(tab) {
      tabs.forEach(function (other) {
        const on = other === tab;
        other.setAttribute("aria-selected", on ? "true" : "false");
        other.tabIndex = on ? 0 : -1;
        const panel = document.getElementById(other.getAttribute("aria-controls"));
        panel.hidden = !on;
        if (on) { show(panel, false); }
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

  if (srToggle) {
    srToggle.checked = screenReaderWanted();
    srToggle.addEventListener("change", function () {
      try {
        window.localStorage.setItem(SR_KEY, srToggle.checked ? "on" : "off");
      } catch (err) { /* storage disabled: the choice lasts for this page only */ }
      started.forEach(function (t) { t.term.options.screenReaderMode = srToggle.checked; });
    });
  }

  // Reconnect at once when the network returns, the tab is shown again, or the laptop wakes
  // (timers stop while it sleeps: a tick arriving far too late means it slept).
  window.addEventListener("online", wake);
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") { wake(); }
  });
  let lastTick = Date.now();
  window.setInterval(function () {
    const now = Date.now();
    if (now - lastTick > 15000) { wake(); }
    lastTick = now;
  }, 5000);
  window.addEventListener("pagehide", function () { leaving = true; });
  window.addEventListener("pageshow", function (ev) {
    if (ev.persisted) { leaving = false; wake(); }  // back from the page cache
  });

  setUpTabs();
  setUpKeyBar();
  setUpPasteBox();
})();
