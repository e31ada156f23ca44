// The lab page's tasks region: check a task, reveal hints on demand, confirm Submit in a
// dialog. Without this script all three still work: Check and Reveal post their forms (a
// result page, the lab page again), and Submit shows a confirmation page first.
(function () {
  "use strict";

  var hints = document.getElementById("hints");
  var charge = {count: document.getElementById("hint-count"),
                plural: document.getElementById("hint-plural"),
                percent: document.getElementById("hint-percent"),
                cost: document.getElementById("hint-cost-note")};

  // What the Submit dialog says the hints cost: the server's count, from a reveal's answer
  // or the lab page's status poll (lab.js), so hints revealed in another tab or on another
  // device are counted too.
  function setCharge(now) {
    if (!charge.count || !charge.percent || !now) { return; }
    var count = Number(now.count);
    var percent = Number(now.percent);
    if (isNaN(count) || isNaN(percent)) { return; }
    charge.count.textContent = String(count);
    if (charge.plural) { charge.plural.textContent = count === 1 ? "" : "s"; }
    charge.percent.textContent = String(percent);
    if (charge.cost) { charge.cost.hidden = !(percent > 0); }
    markRevealed(now.revealed);
  }

  // Hints revealed in another tab or on another device: their Reveal button here still
  // offered the cost ("Press again to reveal it") though a reveal now charges nothing more.
  // It now says so, and shows the text at the first press.
  function markRevealed(ids) {
    if (!hints || !Array.isArray(ids)) { return; }
    ids.forEach(function (id) {
      var item = document.getElementById("hint-" + id);
      var form = item && item.querySelector(".hint-reveal");
      if (!form || form.dataset.shown === "true") { return; }
      form.dataset.shown = "true";
      delete form.dataset.confirm;
      form.dataset.armed = "false";
      var note = item.querySelector(".hint-confirm");
      if (note) { note.textContent = ""; }
      var button = form.querySelector("button");
      var number = item.querySelector(".hint-head strong");
      button.textContent = "Reveal " + (number ? number.textContent.toLowerCase() : "this hint") +
        " here (revealed elsewhere: no further cost)";
    });
  }
  document.addEventListener("forge:hint-charge", function (event) { setCharge(event.detail); });

  // A button marked busy while its request runs, not disabled: disabling the focused button
  // would drop the keyboard focus to the top of the page. False when it is already busy.
  function busy(button, on) {
    if (on && button.getAttribute("aria-disabled") === "true") { return false; }
    button.setAttribute("aria-disabled", on ? "true" : "false");
    return true;
  }

  // Signed out while the page was open: the way back to this lab, after the message.
  function addSignin(el, href) {
    if (!href) { return; }
    var link = document.createElement("a");
    link.href = href;
    link.textContent = "Sign in again";
    el.appendChild(document.createTextNode(" "));
    el.appendChild(link);
  }

  function reveal(form) {
    var item = form.closest(".hint");
    var error = item.querySelector(".hint-error");
    var button = form.querySelector("button");
    if (!busy(button, true)) { return; }
    error.hidden = true;
    // Said while the request runs (on a slow network the press seemed to do nothing): on
    // the button, and in the hint's status message for a screen reader.
    var label = button.textContent;
    var note = item.querySelector(".hint-confirm");
    var number = item.dataset.number;
    window.clearTimeout(expiries.get(form));  // a confirmed question is not taken back now
    expiries.delete(form);
    button.textContent = "Revealing…";
    if (note) { note.textContent = "Revealing hint " + number + "…"; }
    function failed(message) {
      button.textContent = label;
      if (note) { note.textContent = ""; }
      error.textContent = message;
      error.hidden = false;
      disarm(form);
      busy(button, false);
    }
    fetch(form.action, {method: "POST", body: new FormData(form), credentials: "same-origin",
                        headers: {"Accept": "application/json"}})
      .then(function (resp) {
        return resp.json().then(function (body) { return {ok: resp.ok, body: body}; });
      })
      .then(function (answer) {
        if (!answer.ok) {
          failed(answer.body.message || "This hint could not be revealed.");
          addSignin(error, answer.body.signin);
          return;
        }
        if (note) { note.textContent = ""; }
        var text = item.querySelector(".hint-text");
        text.innerHTML = answer.body.html;  // rendered by the server, raw HTML disabled
        text.hidden = false;
        text.setAttribute("tabindex", "-1");
        form.remove();
        text.focus();
        setCharge(answer.body.charge);
      })
      .catch(function () {
        failed("The hint could not be revealed (connection problem). Try again.");
      });
  }

  // A hint that costs score asks first, on the page: the first press says what it costs
  // and turns the button into the confirmation, a second press within CONFIRM_MS reveals.
  // A stray tap on a phone costs nothing (a browser dialog would be dismissed unseen by
  // some browsers and by automation alike).
  var CONFIRM_MS = 15000;
  var expiries = new WeakMap();  // form -> the timer that takes its question back

  function ask(form) {
    var button = form.querySelector("button");
    var item = form.closest(".hint");
    var label = button.textContent;
    form.dataset.armed = "true";
    form.dataset.label = label;
    button.textContent = "Yes, r" + label.slice(1);
    item.querySelector(".hint-error").hidden = true;
    item.querySelector(".hint-confirm").textContent = form.dataset.confirm;
    window.clearTimeout(expiries.get(form));
    expiries.set(form, window.setTimeout(function () {
      if (form.isConnected) { disarm(form); }
    }, CONFIRM_MS));
  }

  // The question taken back (its time is up, or the reveal was refused or did not reach
  // the server): the button reads as before and its next press asks again. A refused
  // reveal left it reading "Yes, reveal …" for the rest of the 15 s. Its timer goes with
  // it: left running, it took back a question asked again before it ran out.
  function disarm(form) {
    window.clearTimeout(expiries.get(form));
    expiries.delete(form);
    if (form.dataset.armed !== "true") { return; }
    form.dataset.armed = "false";
    form.querySelector("button").textContent = form.dataset.label;
    form.closest(".hint").querySelector(".hint-confirm").textContent = "";
  }

  // Hints for one task open in order, and the server refuses a later one while an earlier
  // one is hidden: a later hint that costs score asked the learner to pay, then said
  // "Reveal hint 1 first". The earlier hint still hidden here (neither revealed in this
  // tab nor reported revealed elsewhere by the status poll), or null.
  function hiddenBefore(item) {
    var all = hints.querySelectorAll(".hint");
    for (var i = 0; i < all.length && all[i] !== item; i++) {
      var form = all[i].querySelector(".hint-reveal");
      if (all[i].dataset.criterion === item.dataset.criterion && form &&
          form.dataset.shown !== "true") {
        return all[i];
      }
    }
    return null;
  }

  if (hints) {
    // A double click or double tap is one press: its second click (detail 2) neither
    // confirms nor reveals. A press with the keyboard has detail 0.
    hints.addEventListener("click", function (event) {
      if (event.detail > 1 && event.target.closest(".hint-reveal button")) {
        event.preventDefault();
      }
    });
    hints.addEventListener("submit", function (event) {
      var form = event.target;
      if (!form.classList || !form.classList.contains("hint-reveal")) { return; }
      event.preventDefault();
      var item = form.closest(".hint");
      var earlier = hiddenBefore(item);
      if (earlier && form.dataset.shown !== "true") {  // said before any cost is asked
        var error = item.querySelector(".hint-error");
        disarm(form);
        error.textContent = "Reveal hint " + earlier.dataset.number +
          " first (hints for a task open in order). Nothing was charged.";
        error.hidden = false;
        return;
      }
      if (form.dataset.confirm && form.dataset.armed !== "true") {
        ask(form);
        return;
      }
      var note = form.closest(".hint").querySelector(".hint-confirm");
      if (note) { note.textContent = ""; }
      reveal(form);
    });
  }

  function checkTask(form) {
    var result = form.parentNode.querySelector(".task-result");
    var button = form.querySelector("button");
    if (!busy(button, true)) { return; }
    var before = {text: result.textContent, className: result.className};
    result.textContent = "Checking…";
    fetch(form.action, {method: "POST", body: new FormData(form), credentials: "same-origin",
                        headers: {"Accept": "application/json"}})
      .then(function (resp) {
        return resp.json().then(function (body) {
          return {ok: resp.ok, body: body, wait: resp.headers.get("Retry-After")};
        });
      })
      .then(function (answer) {
        var body = answer.body;
        if (!answer.ok && body.error === "check_too_soon" && result.dataset.answered) {
          // Pressed again at once: the answer just shown stays, with when to ask again.
          result.textContent = before.text.replace(/ \(Checked moments ago[^)]*\)$/, "") +
            (answer.wait ? " (Checked moments ago: check again in " + answer.wait + " s.)"
                         : " (Checked moments ago: check again shortly.)");
          result.className = before.className;
          busy(button, false);
          return;
        }
        if (!answer.ok) {
          result.textContent = body.message || "The task could not be checked.";
          addSignin(result, body.signin);
        } else if (body.passed) {
          result.textContent = "Passes now. " + body.note;
        } else {
          result.textContent = "Not passing yet: " + body.reasons.join("; ") + ". " + body.note;
        }
        if (answer.ok) {
          result.dataset.answered = "true";
        } else {
          delete result.dataset.answered;  // an error shown: nothing to keep on a re-press
        }
        result.className = "task-result " + (answer.ok && body.passed ? "ok" : "bad");
        busy(button, false);
      })
      .catch(function () {
        result.textContent = "The task could not be checked (connection problem). Try again.";
        busy(button, false);
      });
  }

  var tasks = document.getElementById("tasks");
  if (tasks) {
    tasks.addEventListener("submit", function (event) {
      var form = event.target;
      if (!form.classList || !form.classList.contains("task-check")) { return; }
      event.preventDefault();
      checkTask(form);
    });
  }

  var submit = document.getElementById("submit");
  var dialog = document.getElementById("submit-dialog");
  if (submit && dialog && typeof dialog.showModal === "function") {
    var opener = document.getElementById("submit-button");
    var confirmed = false;
    submit.addEventListener("submit", function (event) {
      event.preventDefault();
      if (confirmed) { return; }  // handed in already: a press while it goes sends nothing
      dialog.showModal();
      document.getElementById("submit-cancel").focus();
    });
    document.getElementById("submit-cancel").addEventListener("click", function () {
      dialog.close();
    });
    dialog.addEventListener("close", function () {
      if (!confirmed && opener) { opener.focus(); }
    });
    var offline = document.getElementById("submit-offline");
    document.getElementById("submit-confirm").addEventListener("click", function () {
      // Offline, the post left the lab page for the browser's "No internet" page, and the
      // learner could not tell whether the lab was submitted: it is not sent, and says so.
      if (navigator.onLine === false && offline) {
        offline.textContent = "You are offline: nothing was submitted and your lab keeps " +
          "running. Press Submit again once you are back online.";
        offline.hidden = false;
        dialog.close();  // the focus goes back to Submit
        return;
      }
      if (offline) { offline.hidden = true; }
      confirmed = true;
      var flag = document.createElement("input");
      flag.type = "hidden";
      flag.name = "confirm";
      flag.value = "yes";
      submit.appendChild(flag);
      dialog.close();
      if (opener) {  // busy, not disabled: the keyboard focus stays on it
        opener.setAttribute("aria-disabled", "true");
        opener.textContent = "Submitting…";
        opener.focus();
      }
      // The page that comes next follows the lab to its result (lab.js).
      var lab = document.getElementById("lab");
      try { window.sessionStorage.setItem("forge.lab.followed", lab ? lab.dataset.scenario : ""); }
      catch (err) { /* storage off: the result still shows, the focus stays at the top */ }
      submit.submit();  // submit() fires no submit event: the handler above is not run
    });
    // Back to this page as it was left (the back/forward cache): Submit asks again.
    window.addEventListener("pageshow", function (event) {
      if (!event.persisted || !confirmed || !opener) { return; }
      confirmed = false;
      opener.setAttribute("aria-disabled", "false");
      opener.textContent = "Submit for grading";
    });
  }
}());
