// Times in the reader's own time zone. The server works in UTC and its pages say so; in
// a browser set to another zone this shows each <time class="utc"> in that zone, names
// the zone where a page says "UTC" (<span class="zone">), shows the date-time fields
// marked data-utc in local time and sends them as UTC times ending in "Z" (which the
// server reads as such). In a browser in UTC, or without this script, all stays UTC, as
// the labels say.
"use strict";
(function () {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
  if (!zone || zone === "UTC" || zone === "Etc/UTC") return;
  const pad = (n) => String(n).padStart(2, "0");
  const field = (d) => d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) +
    "T" + pad(d.getHours()) + ":" + pad(d.getMinutes());
  // A time shown to be read: to the minute, with its seconds when it is not on a whole
  // minute (a window set through the API from 09:00:00 to 09:00:30 read "09:00 … 09:00").
  const shown = (d) => field(d).replace("T", " ") + (d.getSeconds() ? ":" + pad(d.getSeconds()) : "");
  for (const t of document.querySelectorAll("time.utc")) {
    const d = new Date(t.getAttribute("datetime"));
    if (isNaN(d.getTime())) continue;
    const named = t.textContent.endsWith("UTC");  // "… UTC": the zone goes in its place
    t.title = t.textContent + (named ? "" : " (UTC)");
    t.textContent = shown(d) + (named ? " " + zone : "");
  }
  for (const span of document.querySelectorAll("span.zone")) span.textContent = zone;
  // Free text naming UTC times (a form's notice, an assignment's choice): each
  // "2099-01-01T09:00:00Z" in it becomes the local time with the zone named.
  const stamp = /\b(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2})?Z)/g;
  const local = (text) => text.replace(stamp, (iso) => {
    const d = new Date(iso);
    return isNaN(d.getTime()) ? iso : shown(d) + " (" + zone + ")";
  });
  for (const root of document.querySelectorAll("[data-utc-text]")) {
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      node.textContent = local(node.textContent);
    }
  }
  const fields = (root) => root.querySelectorAll('input[type="datetime-local"][data-utc]');
  for (const f of fields(document)) {
    f.dataset.name = f.name;
    const d = new Date(f.value + "Z");  // the server's value is UTC
    if (f.value && !isNaN(d.getTime())) f.value = field(d);
  }
  // Each field sends its UTC form through a hidden twin; the field itself, nameless,
  // sends nothing. A page come back to (the back button) gets its names again.
  const reset = (form) => {
    for (const h of form.querySelectorAll("input[data-utc-of]")) h.remove();
    for (const f of fields(form)) f.name = f.dataset.name;
  };
  document.addEventListener("submit", (ev) => {
    const form = ev.target;
    reset(form);
    for (const f of fields(form)) {
      if (!f.value) continue;  // empty: "unchanged", sent as it is
      const d = new Date(f.value);  // a date-time without a zone is the browser's time
      if (isNaN(d.getTime())) continue;
      const twin = document.createElement("input");
      twin.type = "hidden";
      twin.name = f.dataset.name;
      twin.value = d.toISOString();
      twin.dataset.utcOf = f.id;
      form.appendChild(twin);
      f.removeAttribute("name");
    }
  });
  window.addEventListener("pageshow", () => {
    for (const form of document.forms) reset(form);
  });
})();
