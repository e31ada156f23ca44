// Lab page, touch screens: Copy on the key bar. A swipe over the terminal scrolls its output,
// so a finger can never select text in it, and the bar had Paste but no way to copy: a
// learner on a phone could not take an address or a code out of the terminal. Copy opens a
// box holding the shown terminal's text, where the phone's own press-and-hold selects and
// copies; "Copy all" puts the whole text on the clipboard where the browser allows it.
"use strict";
(function () {
  const section = document.getElementById("term-section");
  const button = document.getElementById("term-copy");
  const box = document.getElementById("copy-box");
  const text = document.getElementById("copy-text");
  const note = document.getElementById("copy-note");
  if (!section || !button || !box || !text) { return; }

  function shown() {
    const panel = section.querySelector(".term-panel:not([hidden])");
    return panel ? panel.forgeTerminal : null;
  }

  // The rows on the terminal's screen now (where the learner scrolled it to), trailing
  // blanks and empty rows at the end left out.
  function screenText(term) {
    const buffer = term.buffer.active;
    const rows = [];
    for (let y = buffer.viewportY; y < buffer.viewportY + term.rows; y += 1) {
      const line = buffer.getLine(y);
      if (!line) { break; }
      const row = line.translateToString(true);
      if (line.isWrapped && rows.length > 0) { rows[rows.length - 1] += row; } else { rows.push(row); }
    }
    while (rows.length > 0 && rows[rows.length - 1] === "") { rows.pop(); }
    return rows.join("\n");
  }

  function close() {
    const t = box.forgeTerminal;
    box.hidden = true;
    text.value = "";
    if (note) { note.textContent = ""; }
    if (t) { t.term.focus(); }
  }

  // Pressing the button must not take the focus from the terminal (as the bar's keys).
  button.addEventListener("pointerdown", function (ev) { ev.preventDefault(); });
  button.addEventListener("click", function () {
    const t = shown();
    if (!t) { return; }
    box.forgeTerminal = t;
    text.value = screenText(t.term);
    if (note) { note.textContent = ""; }
    box.hidden = false;
    text.focus();
    text.setSelectionRange(0, 0);
  });
  document.getElementById("copy-all").addEventListener("click", function () {
    const clip = navigator.clipboard;
    function failed() {
      if (note) { note.textContent = "The browser did not allow copying: press and hold the text instead."; }
    }
    if (!(window.isSecureContext && clip && clip.writeText)) { failed(); return; }
    clip.writeText(text.value).then(function () {
      if (note) { note.textContent = "Copied to the clipboard."; }
    }, failed);
  });
  document.getElementById("copy-close").addEventListener("click", close);
  box.addEventListener("keydown", function (ev) {
    if (ev.key === "Escape") { ev.preventDefault(); close(); }
  });
}());
