"use strict";
// The ops page: polls the gateway's status every 5 s; rates come from two samples of its counters.

const ops = {
  previous: null,

  async refresh() {
    const reply = await fg.api("GET", "/api/status");
    if (!reply.ok) { fg.show("ops-message", fg.failure(reply)); return; }
    fg.show("ops-message", "");
    const s = reply.data, now = Date.now();
    const services = fg.clear(document.getElementById("services"));
    for (const svc of s.services) {
      const link = s.metrics_links[svc.name];
      const healthy = svc.health === "SERVING";
      services.append(fg.el("tr", {}, fg.el("td", {}, svc.name), fg.el("td", {}, fg.el("code", {}, svc.target)),
        fg.el("td", {}, fg.el("span", { class: `badge ${healthy ? "ok" : "bad"}` }, svc.health)),
        fg.el("td", {}, link ? fg.el("a", { href: link, target: "_blank", rel: "noopener" }, "/metrics") : "–")));
    }
    document.getElementById("model-version").textContent = s.model_version || "(embedding not answering)";
    const decisions = fg.clear(document.getElementById("decisions"));
    const counts = {};
    for (const d of s.decisions) {
      const key = `${d.operation}/${d.outcome}`;
      counts[key] = Number(d.count);
      let rate = "–";
      if (ops.previous && key in ops.previous.counts) {
        rate = (((counts[key] - ops.previous.counts[key]) * 60000) / (now - ops.previous.at)).toFixed(1);
      }
      decisions.append(fg.el("tr", {}, fg.el("td", {}, d.operation), fg.el("td", {}, fg.el("span", { class: `badge ${d.outcome === "ACCEPT" ? "ok" : d.outcome === "REFER" ? "bad" : "wait"}` }, d.outcome)),
        fg.el("td", {}, d.count), fg.el("td", {}, rate)));
    }
    ops.previous = { at: now, counts };
    const lists = fg.clear(document.getElementById("watchlists"));
    for (const w of s.watchlists) lists.append(fg.el("tr", {}, fg.el("td", {}, w.name), fg.el("td", {}, w.kind.replace("WATCHLIST_KIND_", "").toLowerCase()), fg.el("td", {}, w.subject_count), fg.el("td", {}, w.template_count)));
    document.getElementById("started").textContent = `gateway started ${fg.when(s.started_at)}`;
    document.getElementById("updated").textContent = `updated ${new Date(now).toLocaleTimeString()}`;
  },
};

fg.init("ops").then((me) => {
  if (!me) return;
  ops.refresh();
  setInterval(ops.refresh, 5000);
});
