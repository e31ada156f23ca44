// Lab page: the terminal card in full screen (the Fullscreen API, else "maximised" over the
// page). terminal.js refits the terminals by itself when their boxes change size.
"use strict";
(function () {
  const section = document.getElementById("term-section");
  const fullButton = document.getElementById("term-fullscreen");
  if (!section || !fullButton) { return; }

  // Esc (in the fallback: outside the terminal, which needs Esc itself) or the button leaves.
  function setFull(on) {
    section.classList.toggle("is-fullscreen", on);
    document.documentElement.classList.toggle("term-maximised",
                                              on && section.classList.contains("maximised"));
    fullButton.textContent = on ? "Exit full screen" : "Full screen";
    fullButton.setAttribute("aria-pressed", on ? "true" : "false");
  }

  function toggleFull() {
    if (document.fullscreenElement === section) { document.exitFullscreen(); return; }
    if (section.classList.contains("maximised")) {
      section.classList.remove("maximised");
      setFull(false);
      return;
    }
    const fallback = function () { section.classList.add("maximised"); setFull(true); };
    if (document.fullscreenEnabled && section.requestFullscreen) {
      section.requestFullscreen().catch(fallback);
    } else {
      fallback();
    }
  }

  fullButton.addEventListener("click", toggleFull);
  document.addEventListener("fullscreenchange", function () {
    setFull(document.fullscreenElement === section);
  });
  document.addEventListener("keydown", function (ev) {
    if (ev.key === "Escape" && section.classList.contains("maximised") &&
        !(ev.target instanceof Element && ev.target.closest(".xterm"))) {
      section.classList.remove("maximised");
      setFull(false);
      fullButton.focus();
    }
  });
})();
