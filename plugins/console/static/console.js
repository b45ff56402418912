// mailpipe console: the few things that need a script (no build step, no external library).
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // Live parts: <div data-live="/url" data-interval="2000"> is refreshed from the url.
  for (const el of document.querySelectorAll("[data-live]")) {
    const every = parseInt(el.dataset.interval || "2000", 10);
    const refresh = async () => {
      try {
        const r = await fetch(el.dataset.live, {credentials: "same-origin", cache: "no-store"});
        if (r.status === 401) { window.location = "/login"; return; }
        if (r.ok) { el.innerHTML = await r.text(); el.dataset.updated = String(Date.now()); }
      } catch (e) { /* the server may be restarting: try again next time */ }
    };
    setInterval(refresh, every);
  }
  // Forms that ask first: <form data-confirm="Really?">.
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (ev) => { if (!window.confirm(form.dataset.confirm)) ev.preventDefault(); });
  }
  // Outgoing Mail: the authentication fields only matter when authentication is required.
  const required = document.getElementById("auth_required");
  if (required) {
    const sync = () => {
      for (const name of ["auth_mode", "username", "password"]) {
        const box = document.getElementById("field-" + name);
        if (box) box.classList.toggle("muted", !required.checked);
      }
    };
    required.addEventListener("change", sync);
    sync();
  }
});
