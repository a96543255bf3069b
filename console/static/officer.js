"use strict";
// The officer's page: live referral queue (server-sent events), one referral, compare, identify.

const officer = {
  selected: null,
  urls: [],

  reasonText(row) { return (row.reasons || []).map((r) => r.code).join(", "); },

  renderQueue(rows) {
    const body = fg.clear(document.getElementById("queue"));
    document.getElementById("queue-count").textContent = rows.length;
    for (const row of rows) {
      const hit = (row.reasons || []).some((r) => r.code === "REASON_CODE_WATCHLIST_HIT");
      const tr = fg.el("tr", { class: "row", "data-decision": row.decision_id, onclick: () => officer.open(row.decision_id) },
        fg.el("td", {}, fg.when(row.decided_at)),
        fg.el("td", {}, row.gate_id || "–"),
        fg.el("td", {}, hit ? fg.el("span", { class: "badge hit" }, "WATCHLIST HIT") : null, " ",
          officer.reasonText(row).replaceAll("REASON_CODE_", "")));
      if (row.decision_id === officer.selected) tr.classList.add("selected");
      body.append(tr);
    }
  },

  listen() {
    const state = document.getElementById("queue-state");
    const source = new EventSource("/api/referrals/events");
    source.addEventListener("referrals", (event) => {
      const queue = JSON.parse(event.data), missing = (queue.unreachable || []).length;
      state.textContent = missing
        ? `incomplete: ${missing} gateway replica(s) not answering, their referrals are missing · ${new Date().toLocaleTimeString()}`
        : `live · updated ${new Date().toLocaleTimeString()}`;
      state.classList.toggle("warning", missing > 0);
      officer.renderQueue(queue.referrals);
    });
    source.addEventListener("problem", (event) => { state.textContent = `gateway: ${JSON.parse(event.data).message}`; });
    source.onerror = () => { state.textContent = "reconnecting…"; };
  },

  async open(decisionId) {
    officer.selected = decisionId;
    for (const tr of document.querySelectorAll("#queue tr")) tr.classList.toggle("selected", tr.dataset.decision === decisionId);
    fg.show("referral-message", "");
    const reply = await fg.api("GET", `/api/referrals/${encodeURIComponent(decisionId)}`);
    if (!reply.ok) { fg.show("referral-message", fg.failure(reply)); return; }
    officer.renderReferral(reply.data);
  },

  setImage(id, image) {
    const url = fg.imageUrl(image);
    const img = document.getElementById(id);
    if (url) { officer.urls.push(url); img.src = url; img.classList.remove("hidden"); }
    else { img.removeAttribute("src"); img.classList.add("hidden"); }
  },

  renderReferral(referral) {
    for (const url of officer.urls.splice(0)) URL.revokeObjectURL(url);
    document.getElementById("referral-empty").classList.add("hidden");
    document.getElementById("referral-body").classList.remove("hidden");
    const record = referral.record, decision = record.decision;
    officer.setImage("live-image", referral.live);
    officer.setImage("portrait-image", referral.portrait);
    document.getElementById("images-note").textContent = referral.images_held
      ? "Images are held by the gateway only until the outcome is recorded."
      : "Images are no longer held (outcome recorded or hold expired).";
    const reasons = fg.clear(document.getElementById("referral-reasons"));
    for (const r of decision.reasons || []) reasons.append(fg.el("li", {}, fg.el("strong", {}, r.code.replace("REASON_CODE_", "")), " ", r.message));
    const scores = fg.clear(document.getElementById("referral-scores"));
    for (const s of decision.scores || []) {
      // Which portrait source and size band set a 1:1 threshold, and the FAR it gave there.
      const origin = s.calibration ? `${s.calibration}${s.measured_far ? ` (FAR there ${s.measured_far.toExponential(1)})` : ""}` : "–";
      scores.append(fg.el("tr", {}, fg.el("td", {}, s.name), fg.el("td", {}, fg.num(s.value)), fg.el("td", {}, fg.num(s.threshold)), fg.el("td", {}, s.target_far || "–"), fg.el("td", {}, origin)));
    }
    const hit = referral.hit_status !== "HIT_STATUS_UNSPECIFIED";
    document.getElementById("hit-box").classList.toggle("hidden", !hit);
    if (hit) {
      const status = { HIT_STATUS_UNCONFIRMED: ["unconfirmed", "hit"], HIT_STATUS_AWAITING_SECOND: ["awaiting a second officer", "wait"], HIT_STATUS_CONFIRMED: ["confirmed by two officers", "bad"] }[referral.hit_status];
      const badge = document.getElementById("hit-status");
      badge.textContent = status[0];
      badge.className = `badge ${status[1]}`;
      const cands = fg.clear(document.getElementById("referral-candidates"));
      for (const c of referral.candidates.length ? referral.candidates : record.candidates || []) {
        const info = c.info || {};
        cands.append(fg.el("tr", {}, fg.el("td", {}, info.display_name || "(removed)"), fg.el("td", {}, info.category || "–"),
          fg.el("td", {}, c.watchlist), fg.el("td", {}, fg.el("code", {}, c.subject_id)), fg.el("td", {}, fg.num(c.score))));
      }
      document.getElementById("hit-confirmed-by").textContent = referral.hit_confirmed_by.length ? `Confirmed by: ${referral.hit_confirmed_by.join(", ")}` : "";
      document.getElementById("confirm-hit").disabled = referral.hit_status === "HIT_STATUS_CONFIRMED";
    }
    const closed = referral.outcome !== "REFERRAL_OUTCOME_UNSPECIFIED";
    document.getElementById("referral-outcome").textContent = closed
      ? `${referral.outcome.replace("REFERRAL_OUTCOME_", "")} by ${referral.outcome_by}` : "Open: record what you decided.";
    for (const b of document.querySelectorAll("#outcome-actions button")) b.disabled = closed;
    document.getElementById("referral-meta").textContent = `gate ${record.gate_id || "–"} · ${fg.when(decision.decided_at)} · decision ${decision.decision_id} · model ${decision.model_version.slice(0, 12)}`;
  },

  async act(url, body, done) {
    const reply = await fg.api("POST", url, body);
    if (!reply.ok) { fg.show("referral-message", fg.failure(reply)); return; }
    officer.renderReferral(reply.data);
    fg.show("referral-message", done, "info");
  },

  async compare() {
    const first = document.getElementById("compare-first").files[0], second = document.getElementById("compare-second").files[0];
    if (!first || !second) { fg.show("compare-message", "Choose two photos."); return; }
    const form = new FormData();
    form.append("first", first); form.append("second", second);
    fg.show("compare-message", "Comparing…", "info");
    const reply = await fg.api("POST", "/api/compare", form);
    if (!reply.ok) { fg.show("compare-message", fg.failure(reply)); return; }
    fg.show("compare-message", "");
    const r = reply.data;
    document.getElementById("compare-result").classList.remove("hidden");
    const verdict = document.getElementById("compare-verdict");
    verdict.textContent = r.verdict;
    verdict.className = `verdict ${r.outcome === "ACCEPT" ? "same" : "different"}`;
    document.getElementById("compare-score").textContent = fg.num(r.similarity);
    document.getElementById("compare-threshold").textContent = fg.num(r.threshold);
    document.getElementById("compare-far").textContent = r.target_far ? `(FAR ${r.target_far})` : "";
    const reasons = fg.clear(document.getElementById("compare-reasons"));
    for (const x of r.reasons) reasons.append(fg.el("li", {}, x.message));
  },

  async identify() {
    const photo = document.getElementById("identify-photo").files[0];
    if (!photo) { fg.show("identify-message", "Choose a photo."); return; }
    const form = new FormData();
    form.append("photo", photo);
    form.append("watchlists", document.getElementById("identify-lists").value);
    form.append("top_k", document.getElementById("identify-topk").value);
    fg.show("identify-message", "Searching…", "info");
    const reply = await fg.api("POST", "/api/identify", form);
    if (!reply.ok) { fg.show("identify-message", fg.failure(reply)); return; }
    fg.show("identify-message", "");
    const r = reply.data;
    document.getElementById("identify-result").classList.remove("hidden");
    document.getElementById("identify-summary").textContent =
      `${r.candidates.length} candidate(s) at or above ${fg.num(r.threshold)} in ${r.watchlists.join(", ")}`;
    const body = fg.clear(document.getElementById("identify-candidates"));
    r.candidates.forEach((c, i) => body.append(fg.el("tr", {}, fg.el("td", {}, i + 1), fg.el("td", {}, c.display_name || "–"),
      fg.el("td", {}, c.category || "–"), fg.el("td", {}, c.watchlist), fg.el("td", {}, fg.el("code", {}, c.subject_id)), fg.el("td", {}, fg.num(c.score)))));
  },

  preview(inputId, imgId) {
    document.getElementById(inputId).addEventListener("change", (event) => {
      const file = event.target.files[0];
      const img = document.getElementById(imgId);
      if (file) { img.src = URL.createObjectURL(file); }
    });
  },
};

fg.init("officer").then((me) => {
  if (!me) return;
  officer.listen();
  document.getElementById("confirm-hit").addEventListener("click", () =>
    officer.act(`/api/referrals/${encodeURIComponent(officer.selected)}/confirm-hit`, {}, "Your confirmation is recorded."));
  for (const b of document.querySelectorAll("#outcome-actions button")) {
    b.addEventListener("click", () =>
      officer.act(`/api/referrals/${encodeURIComponent(officer.selected)}/outcome`, { outcome: b.dataset.outcome }, "Outcome recorded."));
  }
  document.getElementById("compare-run").addEventListener("click", officer.compare);
  document.getElementById("identify-run").addEventListener("click", officer.identify);
  officer.preview("compare-first", "compare-first-preview");
  officer.preview("compare-second", "compare-second-preview");
});
