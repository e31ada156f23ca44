// Lab page: poll the lab's status and count down (the terminals are terminal.js).
// Served as a static file so the page's Content-Security-Policy can forbid inline script.
"use strict";
(function () {
  const lab = document.getElementById("lab");
  if (!lab) { return; }
  const id = lab.dataset.scenario;
  const shownState = lab.dataset.state;
  const shownScore = lab.dataset.scoreReady === "true";
  // The deadline on this device's clock: the server's seconds left when it made the page,
  // counted from when the page loaded, so a device clock set wrong (a wrong time zone, a
  // flat battery) neither shows the lab ending early nor opens Extend too soon. An
  // extension moves it by as much as the server's deadline moved.
  let serverExpires = lab.dataset.expires ? Date.parse(lab.dataset.expires) : NaN;
  let expires = lab.dataset.remaining ? Date.now() + Number(lab.dataset.remaining) * 1000 : NaN;
  const finished = ["failed", "expired", "deleted"];
  const FOLLOWED = "forge.lab.followed";  // this tab follows this lab to its result

  // Said once each as the end nears (the timer itself is often scrolled out of sight):
  // at 10 and at 2 minutes left, as "less than" the minutes rounded up (68 s left is
  // "less than 2 min": "2 min" alone overstated it).
  const warnings = [120, 600];
  let warned = Infinity;

  function minutesAndSeconds(seconds) {
    return Math.floor(seconds / 60) + " min " + (seconds % 60) + " s";
  }

  function showRemaining() {
    const out = document.getElementById("remaining");
    if (!out || isNaN(expires)) { return; }
    const left = Math.max(0, Math.floor((expires - Date.now()) / 1000));
    out.textContent = minutesAndSeconds(left);
    showExtend(left);
    warnEnd(left);
  }

  // Said in the status card (announced) and again just above the terminal (seen: working
  // in the terminal scrolls the card out of sight; not announced twice).
  function warnEnd(left) {
    const boxes = ["time-warning", "term-time-warning"].map(function (id) {
      return document.getElementById(id);
    }).filter(Boolean);
    if (boxes.length === 0 || left <= 0) { return; }
    if (left > warnings[warnings.length - 1]) {  // more time again (extended elsewhere)
      warned = Infinity;
      boxes.forEach(function (box) { box.hidden = true; });
      return;
    }
    for (const at of warnings) {
      if (left <= at && at < warned) {
        warned = at;
        const text = "Your lab ends in less than " + Math.max(1, Math.ceil(left / 60)) +
          " min and is then graded as it stands. Extend it, or submit when you are done.";
        boxes.forEach(function (box) { box.textContent = text; box.hidden = false; });
        return;
      }
    }
  }

  // The session cookie ran out while the page was open: the terminal still works, so
  // nothing else would tell the learner that the buttons now refuse them.
  // The header then no longer says "Signed in as …" beside it (review CC).
  function showSignedOut(out) {
    const note = document.getElementById("signed-out");
    if (note) { note.hidden = !out; }
    document.querySelectorAll('header .who, #account-link, header form[action="/signout"]')
      .forEach(function (el) { el.hidden = out; });
  }

  // The browser went offline: the page could not ask after the lab, and a lab still
  // starting kept counting and then said "the platform may be busy", never that it was
  // the learner's own connection. Said beside the signed-out note (and the busy note kept
  // back meanwhile); gone by itself at the first answer once back online.
  let offline = false;
  function showOffline(out) {
    offline = out;
    const note = document.getElementById("lab-offline");
    if (note) { note.hidden = !out; }
    showWaited();
  }
  window.addEventListener("offline", function () { showOffline(true); });

  // Extend stays visible; its button is usable only in the last 10 minutes (the rule the
  // server applies) and never once the plan's maximum is reached. Marked aria-disabled, not
  // disabled: a disabled button is skipped by Tab, so a keyboard or screen-reader user never
  // reached it nor heard why it could not be pressed (its note, read as its description).
  function showExtend(left) {
    const block = document.getElementById("extend-block");
    const button = document.getElementById("extend-button");
    if (!block || !button || extending) { return; }
    const off = block.dataset.atCap === "true" || left > 600;
    button.setAttribute("aria-disabled", off ? "true" : "false");
    const why = document.getElementById("extend-why");
    if (why && !off && why.dataset.kind === "not-open") { why.hidden = true; }
    // Extend's description, read when it has the focus; not a live region (it was one,
    // and a screen reader said "Available in 34 min …" again every minute of the lab), and
    // written only when it changes.
    const when = document.getElementById("extend-when");
    if (when && block.dataset.atCap !== "true") {
      const text = left > 600 ? "Available in " + Math.ceil((left - 600) / 60) +
        " min (the last 10 minutes)." : "";
      if (when.textContent !== text) { when.textContent = text; }
    }
  }

  // A press of Extend is sent once: on a slow network a second press posted the form again
  // after the first had extended the lab, and the page then said "a lab can be extended only
  // in its last 10 minutes" as if the extension had failed. Busy, not disabled (the keyboard
  // focus stays on it), until the lab's page comes back.
  let extending = false;
  const extendForm = document.getElementById("extend");
  if (extendForm) {
    extendForm.addEventListener("submit", function (event) {
      if (extending) { event.preventDefault(); return; }
      const button = document.getElementById("extend-button");
      if (button && button.getAttribute("aria-disabled") === "true") {  // not open: say why
        event.preventDefault();
        sayWhyNotExtend();
        return;
      }
      // Offline, the post left the lab page for the browser's "No internet" page (its
      // terminal and countdown gone, nothing said about the lab): it is not sent, and says so.
      const why = document.getElementById("extend-why");
      if (navigator.onLine === false && why) {
        event.preventDefault();
        why.textContent = "You are offline: the lab was not extended. " +
          "Press Extend again once you are back online.";
        why.dataset.kind = "offline";
        why.hidden = false;
        return;
      }
      if (why) { why.hidden = true; }
      extending = true;
      if (button) {
        button.dataset.label = button.textContent;
        button.setAttribute("aria-disabled", "true");
        button.textContent = "Extending…";
      }
    });
    window.addEventListener("pageshow", function (event) {  // back from the page cache
      const button = document.getElementById("extend-button");
      if (!event.persisted || !extending || !button) { return; }
      extending = false;
      button.textContent = button.dataset.label || button.textContent;
      showRemaining();
    });
  }

  // Extend pressed while it cannot be: what stops it and when it opens, where it was pressed.
  function sayWhyNotExtend() {
    const block = document.getElementById("extend-block");
    const why = document.getElementById("extend-why");
    if (!block || !why) { return; }
    const left = isNaN(expires) ? NaN : Math.max(0, Math.floor((expires - Date.now()) / 1000));
    why.textContent = block.dataset.atCap === "true"
      ? "Not extended: this lab has reached the most time your plan allows. Submit when you are done."
      : "Not yet: a lab can be extended only in its last 10 minutes" +
        (isNaN(left) ? "." : ", in " + Math.max(1, Math.ceil((left - 600) / 60)) + " min.");
    why.dataset.kind = "not-open";
    why.hidden = false;
  }

  async function poll() {
    try {
      const resp = await fetch("/lab/" + encodeURIComponent(id) + "/status",
                               { credentials: "same-origin", cache: "no-store" });
      showOffline(false);
      showSignedOut(resp.status === 401);
      if (resp.ok) {
        const body = await resp.json();
        const deadline = body.expires_at ? Date.parse(body.expires_at) : NaN;
        if (!isNaN(deadline) && deadline !== serverExpires) {  // extended, here or elsewhere
          expires = isNaN(expires) || isNaN(serverExpires)
            ? Date.now() + (Number(body.remaining_s) || 0) * 1000
            : expires + (deadline - serverExpires);
          serverExpires = deadline;
        }
        if (body.hints) {  // the Submit dialog's hint count (tasks.js)
          document.dispatchEvent(new CustomEvent("forge:hint-charge", { detail: body.hints }));
        }
        if (body.state !== shownState || body.score_ready !== shownScore) {
          follow();
          window.location.reload();
          return;
        }
      }
    } catch (err) {  // transient, or offline: try again on the next tick
      if (navigator.onLine === false) { showOffline(true); }
    }
    if (!finished.includes(shownState) && !(shownState === "completed" && shownScore)) {
      window.setTimeout(poll, 1500);
    }
  }

  // A lab still starting: how long it has waited (counted from the server's figure, so the
  // learner's own clock does not matter), and after a minute that it is slow, never silent.
  const waitedOut = document.getElementById("progress-time");
  const loadedAt = Date.now();
  const slowAfter = Number(lab.dataset.slowAfter) || 60;

  function showWaited() {
    if (!waitedOut) { return; }
    const waited = Number(waitedOut.dataset.waited || 0) +
      Math.floor((Date.now() - loadedAt) / 1000);
    waitedOut.textContent = waited < 60 ? waited + " s" : minutesAndSeconds(waited);
    const slow = document.getElementById("progress-slow");
    if (slow) { slow.hidden = offline || waited < slowAfter; }
  }

  // Back from Extend: the page came again and its terminal took the keyboard focus, so
  // nothing said the lab was extended and a keyboard user was left in the shell. It says
  // so where they pressed, and keeps the focus there; a reload does not say it again.
  function sayExtended() {
    const done = document.getElementById("extend-done");
    if (window.location.hash !== "#extended" || !done || isNaN(expires)) { return; }
    const left = Math.max(0, Math.floor((expires - Date.now()) / 1000));
    done.textContent = "Extended: your lab now ends in " + Math.ceil(left / 60) + " min.";
    done.hidden = false;
    done.focus();
    window.history.replaceState(null, "", window.location.pathname + window.location.search);
  }

  // The page came again by itself (the lab moved on: graded, its verdict in) or after a
  // confirmed Submit: the keyboard focus was left at the top of a new page and nothing said
  // that the result had come. Its heading takes the focus (a screen reader reads it; the
  // title, which the server writes, leads with the outcome); a page opened afresh, or
  // reloaded by the learner, keeps the focus where the browser puts it. A lab that ended
  // with no score (it failed to start, say) said nothing either: its note takes the focus.
  function follow() {
    try { window.sessionStorage.setItem(FOLLOWED, id); } catch (err) { /* storage off */ }
  }

  function showResult() {
    let mark = null;
    try { mark = window.sessionStorage.getItem(FOLLOWED); } catch (err) { return; }
    if (mark !== id) { return; }
    // Grading, or graded with the verdict still to come: the next page brings the result.
    if (shownState === "grading" || (shownState === "completed" && !shownScore)) { return; }
    window.sessionStorage.removeItem(FOLLOWED);  // taken once (a lab started: its terminal)
    const heading = document.getElementById("result-h");
    const ended = document.getElementById("ended-note");
    if (heading && shownScore) { heading.focus(); } else if (ended) { ended.focus(); }
  }

  showResult();
  sayExtended();
  showRemaining();
  showWaited();
  window.setInterval(function () { showRemaining(); showWaited(); }, 1000);
  window.setTimeout(poll, 1500);
})();
