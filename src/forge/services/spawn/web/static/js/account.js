// The account page's new sign-in key: copy it, or save it as a small text file (made in
// the browser from the page; the key never travels in a URL or another request).
"use strict";
(function () {
  const say = (text) => {
    const out = document.getElementById("key-copied");
    if (out) out.textContent = text;
  };
  const copy = document.getElementById("copy-key");
  if (copy) {
    copy.addEventListener("click", async () => {
      const field = document.getElementById(copy.dataset.copies);
      try {
        await navigator.clipboard.writeText(field.value);
        say("Copied.");
      } catch (err) {
        field.select();
        say("Selected: press Ctrl+C (or Cmd+C) to copy.");
      }
    });
  }
  const save = document.getElementById("download-key");
  if (save) {
    save.addEventListener("click", () => {
      const field = document.getElementById(save.dataset.saves);
      const text = "FrostGate Forge sign-in key\n\n" + field.value + "\n\nSign in at " +
        save.dataset.signin + ": paste the key into \"Your sign-in key or API key\".\n" +
        "Keep it private, like a password. Making a new key on your account page stops this one.\n";
      const url = URL.createObjectURL(new Blob([text], { type: "text/plain" }));
      const link = document.createElement("a");
      link.href = url;
      link.download = "frostgate-forge-sign-in-key.txt";
      document.body.appendChild(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 1000);
      say("Saved as frostgate-forge-sign-in-key.txt.");
    });
  }
})();
