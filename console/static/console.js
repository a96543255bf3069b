// Shared by every page: the session (CSRF token), API calls, safe DOM building, images as blob URLs.
// User data is only ever set as textContent, never as HTML.
"use strict";

const fg = {
  me: null,

  async init(role) {
    const reply = await fetch("/api/me", { credentials: "same-origin" });
    if (reply.status === 401) { location.assign("/login"); return null; }
    fg.me = await reply.json();
    if (role && fg.me.role !== role) { location.assign(fg.me.home); return null; }
    const who = document.getElementById("who");
    if (who) who.textContent = `${fg.me.role} · ${fg.me.key_id}`;
    const out = document.getElementById("logout");
    if (out) out.addEventListener("click", fg.logout);
    fg.tabs();
    return fg.me;
  },

  async logout() {
    await fg.api("POST", "/api/logout");
    location.assign("/login");
  },

  // One API call with the CSRF token; resolves to {ok, status, data}.
  async api(method, url, body, headers = {}) {
    const options = { method, credentials: "same-origin", headers: { ...headers } };
    if (fg.me) options.headers["X-CSRF-Token"] = fg.me.csrf;
    if (body instanceof FormData) options.body = body;
    else if (body !== undefined) { options.body = JSON.stringify(body); options.headers["Content-Type"] = "application/json"; }
    const reply = await fetch(url, options);
    if (reply.status === 401 && url !== "/api/login") { location.assign("/login"); }
    let data = null;
    try { data = await reply.json(); } catch (e) { data = null; }
    return { ok: reply.ok, status: reply.status, data };
  },

  el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (name === "class") node.className = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  },

  clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; },

  show(target, text, kind = "error") {
    const node = typeof target === "string" ? document.getElementById(target) : target;
    fg.clear(node);
    if (text) node.append(fg.el("div", { class: `message ${kind}` }, text));
  },

  failure(reply) { return reply.data && reply.data.message ? `${reply.data.error}: ${reply.data.message}` : `HTTP ${reply.status}`; },

  // An Image message ({data: base64, format_hint}) as a blob: URL (no image data in any URL).
  imageUrl(image) {
    if (!image || !image.data) return null;
    const bytes = Uint8Array.from(atob(image.data), (c) => c.charCodeAt(0));
    const type = { IMAGE_FORMAT_PNG: "image/png", IMAGE_FORMAT_WEBP: "image/webp" }[image.format_hint] || "image/jpeg";
    return URL.createObjectURL(new Blob([bytes], { type }));
  },

  when(iso) { return iso ? new Date(iso).toLocaleString() : ""; },
  num(value, digits = 4) { return value === null || value === undefined ? "–" : Number(value).toFixed(digits); },

  tabs() {
    const buttons = document.querySelectorAll("header nav button[data-tab]");
    for (const button of buttons) {
      button.addEventListener("click", () => {
        for (const b of buttons) b.classList.toggle("active", b === button);
        for (const s of document.querySelectorAll("main > section[data-tab]")) s.classList.toggle("hidden", s.dataset.tab !== button.dataset.tab);
      });
    }
  },
};
