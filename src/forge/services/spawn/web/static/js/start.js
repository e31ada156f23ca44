// The lab list's Start buttons: a press says at once that the lab is being started, and a
// second press while it is (a newcomer pressing again because nothing seemed to happen)
// sends nothing more. Served as a static file (the Content-Security-Policy forbids inline
// script); without it, Start still posts its form.
(function () {
  "use strict";

  var WORKING = "Starting your lab… Its page opens by itself in a few seconds.";

  // Marked busy, not disabled: disabling the focused button would drop the keyboard focus
  // to the top of the page (as tasks.js does for Check and Reveal).
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.matches || !form.matches('form[action="/spawn"]')) { return; }
    if (form.dataset.sent === "true") {
      event.preventDefault();
      return;
    }
    form.dataset.sent = "true";
    var button = form.querySelector("button");
    if (button) {
      button.setAttribute("aria-disabled", "true");
      button.dataset.label = button.textContent;
      button.textContent = "Starting…";
    }
    var note = form.querySelector(".start-progress");
    if (note) { note.textContent = WORKING; }
  });

  // Back to this page from the lab's (the browser keeps the page as it was left): Start
  // works again.
  window.addEventListener("pageshow", function (event) {
    if (!event.persisted) { return; }
    document.querySelectorAll('form[action="/spawn"]').forEach(function (form) {
      delete form.dataset.sent;
      var button = form.querySelector("button");
      if (button && button.dataset.label) {
        button.textContent = button.dataset.label;
        button.setAttribute("aria-disabled", "false");
      }
      var note = form.querySelector(".start-progress");
      if (note) { note.textContent = ""; }
    });
  });
}());
