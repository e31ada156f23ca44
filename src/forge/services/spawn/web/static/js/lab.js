// Lab page: poll the lab's status and count down (the terminals are terminal.js).
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

  showRemaining();
  window.setInterval(showRemaining, 1000);
  window.setTimeout(poll, 1500);
})();
