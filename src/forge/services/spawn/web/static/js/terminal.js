// Lab page terminals: one xterm.js per host the learner may open (a tab each), which
// reconnects by itself after a drop, copies and pastes the way people expect, fits its box
// (also in full screen, terminal_fullscreen.js), and lets a keyboard user leave it
// (Ctrl+Shift+X).
//
// Input (keys, pastes) goes through one queue per terminal, in order: in frames of at most
// CHUNK_BYTES (the server closes a socket on a message over 64 KiB), paced by the server's
// pongs so a long paste never overruns the shell's input queue (the lab drops input past it,
// as a real terminal does). While the terminal is not connected what is typed is kept, up to
// KEEP_MAX_BYTES, and sent once it is again; past that, or on a terminal closed for good,
// input is refused with a message, never lost without a word. A ping every HEARTBEAT_MS
// notices a link that stalls without closing: no pong within PONG_WAIT_MS and the socket is
// given up and reopened. What went out on a socket given up so, and which the shell had
// not received (the server counts what it took from this page's terminal, its "writer",
// over all its sockets), is sent again on the next one: once, neither lost nor repeated.
//
// One shell may be open in several tabs and devices, and the latest size sent wins: a
// tab sends its own size again when its terminal or window takes the focus, and before
// input after RESIZE_AGAIN_MS without sending it, so the screen the learner types into
// is the one the shell draws for (two devices typing at once take turns).
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
  const CHUNK_BYTES = 16384;  // one input frame at most (the server's cap is 64 KiB)
  const WINDOW_BYTES = 32768;  // input sent before the server says it has room for more
  const KEEP_MAX_BYTES = 4 * 1024 * 1024;  // input waiting to be sent, at most
  const HEARTBEAT_MS = 5000;
  const PONG_WAIT_MS = 10000;  // a ping unanswered this long: the link has stalled
  const STUCK_MS = 15000;  // input the shell takes none of for this long is given up
  const RESIZE_AGAIN_MS = 2000;
  const TOO_BIG = 1009;  // the server's close code for a message over its cap
  const MAC = /Mac|iPhone|iPad/.test(navigator.platform || navigator.userAgent || "");
  const encoder = new TextEncoder();
  const note = document.getElementById("term-note");
  const srToggle = document.getElementById("term-sr");
  const fullButton = document.getElementById("term-fullscreen");
  const started = [];
  let leaving = false;
  let noteTimer = 0;

  const NEW_SHELL = "Your previous shell had ended: a new shell was started.";

  function say(text, ms) {
    if (!note) { return; }
    note.textContent = text;
    window.clearTimeout(noteTimer);
    noteTimer = window.setTimeout(function () { note.textContent = ""; }, ms || 4000);
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
    delete t.status.dataset.kept;
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
      encodeURIComponent(t.host) + "&writer=" + t.writer;
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    t.ws = ws;
    t.live = null;  // until the "attached" frame: input waits in the queue
    t.ping = null;
    t.ponged = false;
    t.unpaced = false;
    t.credit = 0;
    let closedWith = null;  // {error, message} from the server's "closed" control frame
    let openedAt = 0;
    ws.onmessage = function (ev) {
      if (typeof ev.data !== "string") {
        let bytes = new Uint8Array(ev.data);
        if (t.notice) {  // after the replay's own reset (ESC c), before the new shell's output
          if (bytes.length >= 2 && bytes[0] === 0x1b && bytes[1] === 0x63) {
            t.term.write(bytes.subarray(0, 2));
            bytes = bytes.subarray(2);
          }
          t.term.write(t.notice);
          t.notice = "";
        }
        t.term.write(bytes);
        return;
      }
      let body = null;
      try { body = JSON.parse(ev.data); } catch (err) { t.term.write(ev.data); return; }
      if (!body || typeof body.type !== "string") { return; }
      if (body.type === "closed" && typeof body.message === "string") { closedWith = body; }
      if (body.type === "pong") { ponged(t, ws, body); }
      if (body.type === "attached") {
        t.term.reset();  // the server replays the shell's screen next: do not show it twice
        // A resize while the socket was connecting was not sent (onResize needs it open):
        // the shell has the size of the URL, so send the one the page shows now.
        if (t.term.rows !== asked.rows || t.term.cols !== asked.cols) {
          ws.send(JSON.stringify({ type: "resize", rows: t.term.rows, cols: t.term.cols }));
        }
        t.sizeAt = Date.now();
        // Another shell than the one this page showed: new for this socket, or started by
        // another tab of the lab that reconnected first ("new" is false here then). Said on
        // the screen too, which stays: the reset has wiped what the old shell showed, and
        // the note goes after 4 s (a learner back at the screen found a bare prompt, their
        // command's output gone, and nothing saying why).
        t.notice = "";
        const other = t.session !== "" && body.session !== t.session;
        if (t.connects > 1 && (body.new === true || other)) {
          t.notice = "\x1b[2m[" + NEW_SHELL + " Whatever ran in it has stopped.]\x1b[0m\r\n";
          if (!(Number(body.replayed) > 0)) { t.term.write(t.notice); t.notice = ""; }
          say(NEW_SHELL);
        }
        resendUnacked(t, body, !other && body.new !== true);
        t.session = typeof body.session === "string" ? body.session : "";
        t.live = ws;
        t.credit = WINDOW_BYTES;
        if (t.outboxBytes > 0) {
          say("Sending what you typed while the terminal was disconnected.");
        }
        flush(t);
        askRoom(t);  // at once: a server that answers pings is known before any stall
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
      // The first connection takes the keyboard, unless the page put it elsewhere first
      // (a message to read, as after Extend).
      const free = !document.activeElement || document.activeElement === document.body;
      if (t.focus && free) { t.term.focus(); }
      t.focus = false;
    };
    ws.onclose = function (ev) {
      if (t.ws !== ws) { return; }
      t.ws = null;
      t.live = null;
      if (leaving) { return; }
      if (ev.code === TOO_BIG) {  // chunking should prevent it; if not, say what happened
        retryLater(t, "The terminal's connection was closed because more was sent at once " +
          "than it accepts: some of what you pasted or typed did not reach the shell.");
        return;
      }
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
    if (t.outboxBytes > 0) {
      say("What you typed while disconnected was not sent: the terminal is closed.", 10000);
      dropQueue(t);
    }
    window.clearTimeout(t.timer);
    setStatus(t, message, error);
    t.banner.hidden = !button;
    if (button) { showBanner(t, "The terminal is closed.", true); }
  }

  function retryLater(t, why) {
    if (t.final || leaving) { return; }
    window.clearTimeout(t.timer);
    setStatus(t, "Disconnected.", null);
    showKept(t);
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
    // A stalled link would hold the question (and the reconnect) for ever: at most 10 s.
    const giveUp = typeof AbortController === "undefined" ? null : new AbortController();
    const giveUpTimer = giveUp ? window.setTimeout(function () { giveUp.abort(); }, 10000) : 0;
    try {
      resp = await fetch("/lab/" + encodeURIComponent(id) + "/status",
                         { credentials: "same-origin", cache: "no-store", redirect: "manual",
                           signal: giveUp ? giveUp.signal : undefined });
    } catch (err) { resp = null; /* offline: the connection attempt below fails too */ }
    window.clearTimeout(giveUpTimer);
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

  // This page's terminal as the server knows it across its sockets (see the top).
  function writerName() {
    const bytes = new Uint8Array(12);
    window.crypto.getRandomValues(bytes);
    return Array.from(bytes, function (b) { return b.toString(16).padStart(2, "0"); }).join("");
  }

  // The server has taken `received` bytes of this writer's input: sent ones up to there
  // need not be kept for sending again.
  function ack(t, received) {
    let drop = Math.min(t.unackedBytes, Math.max(0, received - t.acked));
    t.acked = Math.max(t.acked, received);
    t.unackedBytes -= drop;
    while (drop > 0 && t.unacked.length) {
      const head = t.unacked[0];
      if (head.length <= drop) { t.unacked.shift(); drop -= head.length; }
      else { t.unacked[0] = head.subarray(drop); drop = 0; }
    }
  }

  // Attached again: what the shell had not received goes first, before what waits; on
  // another shell than before, what the old one may have had is not typed into this one.
  function resendUnacked(t, body, sameShell) {
    const received = Number(body.received);
    t.counted = typeof body.received === "number";
    if (t.counted && sameShell) { ack(t, received); }
    if (t.counted && sameShell && t.unackedBytes > 0) {
      t.outbox = t.unacked.concat(t.outbox);
      t.outboxBytes += t.unackedBytes;
    } else if (t.unackedBytes > 0) {
      say("The last " + t.unackedBytes + " bytes you typed may not have reached the shell.",
        10000);
    }
    t.unacked = [];
    t.unackedBytes = 0;
    t.acked = t.counted ? received : 0;
    t.sentTotal = t.acked;
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
      session: "", notice: "",
      status: panel.querySelector(".term-status"), banner: panel.querySelector(".term-banner"),
      bannerText: panel.querySelector(".term-banner-text"),
      reconnect: panel.querySelector(".term-reconnect"), ws: null, timer: 0, frame: 0,
      attempts: 0, connects: 0, final: false, focus: focus, sightFrame: 0,
      live: null, outbox: [], outboxBytes: 0, credit: 0, ping: null, pings: 0, ponged: false,
      unpaced: false, sentTotal: 0, confirmed: 0, stuckSince: 0, roomTimer: 0, sizeAt: 0,
      writer: writerName(), counted: false, acked: 0, unacked: [], unackedBytes: 0 };
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
      term.textarea.addEventListener("focus", function () {
        keepCursorInSightLater(t);
        sendSize(t);  // another tab or device may have sized the shell meanwhile
      });
    }
    term.onResize(function () { sendSize(t); });
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

  // Input for the shell: queued, then sent in order as the connection allows (see the top).
  function send(t, data) {
    const bytes = encoder.encode(data);
    if (bytes.length === 0) { return; }
    if (t.final) {
      say("Not sent: the terminal is closed.");
      return;
    }
    if (t.outboxBytes + bytes.length > KEEP_MAX_BYTES) {
      say("Not sent: " + (t.live ? "the terminal is still sending earlier input" :
        "the terminal is disconnected") + " and holds at most " +
        (KEEP_MAX_BYTES / 1048576) + " MB waiting.", 10000);
      return;
    }
    if (t.live && Date.now() - t.sizeAt > RESIZE_AGAIN_MS) { sendSize(t); }
    t.outbox.push(bytes);
    t.outboxBytes += bytes.length;
    flush(t);
    if (!t.live) { showKept(t); }
  }

  function sendSize(t) {
    if (!t.live || t.live.readyState !== WebSocket.OPEN) { return; }
    t.live.send(JSON.stringify({ type: "resize", rows: t.term.rows, cols: t.term.cols }));
    t.sizeAt = Date.now();
  }

  // Up to `most` bytes from the front of the queue.
  function takeQueued(t, most) {
    const parts = [];
    let size = 0;
    while (t.outbox.length && size < most) {
      const head = t.outbox[0];
      const part = head.length <= most - size ? t.outbox.shift() : head.subarray(0, most - size);
      if (part !== head) { t.outbox[0] = head.subarray(part.length); }
      parts.push(part);
      size += part.length;
    }
    const out = new Uint8Array(size);
    let at = 0;
    parts.forEach(function (part) { out.set(part, at); at += part.length; });
    t.outboxBytes -= size;
    return out;
  }

  function dropQueue(t) {
    t.outbox = [];
    t.outboxBytes = 0;
    t.unacked = [];
    t.unackedBytes = 0;
    window.clearTimeout(t.roomTimer);
    t.stuckSince = 0;
  }

  function flush(t) {
    const ws = t.live;
    if (!ws || ws !== t.ws || ws.readyState !== WebSocket.OPEN) { return; }
    while (t.outboxBytes > 0) {
      const most = Math.min(CHUNK_BYTES, t.unpaced ? CHUNK_BYTES : t.credit);
      if (most <= 0) { askRoom(t); return; }
      const chunk = takeQueued(t, most);
      ws.send(chunk);
      t.credit -= chunk.length;
      t.sentTotal += chunk.length;
      if (t.counted) { t.unacked.push(chunk); t.unackedBytes += chunk.length; }
    }
    if (t.status.dataset.kept) { setStatus(t, "Connected to the " + t.host + " host.", null); }
  }

  function askRoom(t) {
    window.clearTimeout(t.roomTimer);
    const ws = t.live;
    if (t.ping || t.unpaced || !ws || ws.readyState !== WebSocket.OPEN) { return; }
    t.pings += 1;
    t.ping = { id: t.pings, at: Date.now(), sent: t.sentTotal };
    ws.send(JSON.stringify({ type: "ping", id: t.pings }));
  }

  // The server's answer: the link works, and how much more input the shell's queue takes.
  function ponged(t, ws, body) {
    if (ws !== t.live || !t.ping || body.id !== t.ping.id) { return; }
    const ping = t.ping;
    t.ping = null;
    t.ponged = true;
    t.confirmed = ping.sent;
    if (typeof body.received === "number") { ack(t, body.received); }
    const room = typeof body.room === "number" ? body.room : WINDOW_BYTES;
    t.credit = Math.max(0, Math.min(WINDOW_BYTES, room - (t.sentTotal - ping.sent)));
    if (t.outboxBytes > 0 && t.credit <= 0) {
      // The program in the terminal is not reading its input: ask again shortly, and after
      // STUCK_MS without room give the rest up, saying so.
      t.stuckSince = t.stuckSince || Date.now();
      if (Date.now() - t.stuckSince > STUCK_MS) {
        say("Not sent: " + t.outboxBytes + " bytes of what you pasted or typed. The program " +
          "in the terminal is not reading its input.", 15000);
        dropQueue(t);
        return;
      }
      t.roomTimer = window.setTimeout(function () { askRoom(t); }, 200);
      return;
    }
    t.stuckSince = 0;
    flush(t);
  }

  // The heartbeat: a ping when none is waiting; one unanswered for PONG_WAIT_MS means the
  // link has stalled (a server that never answered one pings not: input goes unpaced).
  function beat(t) {
    const ws = t.live;
    if (!ws || ws !== t.ws || ws.readyState !== WebSocket.OPEN || t.unpaced) { return; }
    if (!t.ping) { askRoom(t); return; }
    if (Date.now() - t.ping.at < PONG_WAIT_MS) { return; }
    if (!t.ponged) {
      t.unpaced = true;
      t.ping = null;
      flush(t);
      return;
    }
    const unsure = t.counted ? 0 : t.sentTotal - t.confirmed;  // counted: sent again
    lose(t, "No answer from the lab for " + (PONG_WAIT_MS / 1000) + " seconds." +
      (unsure > 0 ? " The last " + unsure + " bytes you typed may not have reached the shell."
        : ""));
  }

  // Give up a socket that cannot carry anything (a stalled link, the browser offline).
  function lose(t, why) {
    const ws = t.ws;
    if (!ws || t.final) { return; }
    t.ws = null;
    t.live = null;
    t.ping = null;
    try { ws.close(); } catch (err) { /* already closing */ }
    retryLater(t, why);
  }

  // While disconnected the status says what typed input waits to be sent.
  function showKept(t) {
    const kept = t.outboxBytes + t.unackedBytes;  // sent and maybe not received: kept too
    if (t.live || t.final || kept === 0) { return; }
    setStatus(t, (t.ws ? "Connecting. " : "Disconnected. ") + "What you typed (" +
      kept + " bytes) is kept and will be sent when the terminal reconnects.", null);
    t.status.dataset.kept = "yes";
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
  // paste (bracketed where the shell asked for it); a longer text is cut there, saying so.
  const PASTE_MAX = 1000000;
  const pasteBox = document.getElementById("paste-box");
  const pasteText = document.getElementById("paste-text");

  function sendPaste(t, text) {
    if (text && text.length > PASTE_MAX) {
      say("Pasted the first " + PASTE_MAX.toLocaleString("en") + " of " +
        text.length.toLocaleString("en") + " characters: the rest was not sent (at most " +
        PASTE_MAX.toLocaleString("en") + " at once).", 15000);
    }
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
  window.addEventListener("offline", function () {
    started.forEach(function (t) { lose(t, ""); });
  });
  window.addEventListener("focus", function () { started.forEach(sendSize); });
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") { wake(); started.forEach(sendSize); }
  });
  let lastTick = Date.now();
  window.setInterval(function () {
    const now = Date.now();
    if (now - lastTick > 15000) { wake(); }
    lastTick = now;
  }, 5000);
  window.setInterval(function () { started.forEach(beat); }, HEARTBEAT_MS);
  window.addEventListener("pagehide", function () { leaving = true; });
  window.addEventListener("pageshow", function (ev) {
    if (ev.persisted) { leaving = false; wake(); }  // back from the page cache
  });

  setUpTabs();
  setUpKeyBar();
  setUpPasteBox();
})();
