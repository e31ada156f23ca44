// Replays the lab's terminal recordings on the result page with the vendored asciinema-player.
// Served as a static file so the page's Content-Security-Policy can forbid inline script.
"use strict";
(function () {
  if (typeof window.AsciinemaPlayer === "undefined") {
    return;
  }
  document.querySelectorAll("[data-cast]").forEach(function (el) {
    window.AsciinemaPlayer.create(el.getAttribute("data-cast"), el, {
      fit: "width",
      idleTimeLimit: 2,
      preload: true,
      controls: true,
    });
  });
})();
