"use strict";
// The watchlist admin's page: lists, subjects (filtered here, never in a URL), enrol, remove, import.

const admin = {
  subjects: [],
  pendingRemoval: null,

  list() { return document.getElementById("watchlist").value; },
  base() { return `/api/watchlists/${encodeURIComponent(admin.list())}`; },

  async loadLists(select) {
    const reply = await fg.api("GET", "/api/watchlists");
    if (!reply.ok) { fg.show("admin-message", fg.failure(reply)); return; }
    const lists = reply.data.watchlists;
    const choice = fg.clear(document.getElementById("watchlist"));
    const table = fg.clear(document.getElementById("lists"));
    for (const w of lists) {
      choice.append(fg.el("option", { value: w.name }, w.name));
      table.append(fg.el("tr", {}, fg.el("td", {}, w.name), fg.el("td", {}, w.kind.replace("WATCHLIST_KIND_", "").toLowerCase()),
        fg.el("td", {}, w.subject_count), fg.el("td", {}, w.template_count), fg.el("td", {}, w.description)));
    }
    if (select) choice.value = select;
    const current = lists.find((w) => w.name === admin.list());
    document.getElementById("watchlist-info").textContent = current ? `${current.subject_count} subjects · ${current.template_count} templates` : "no watchlist yet: create one";
    if (current) await admin.loadSubjects();
  },

  async loadSubjects() {
    const reply = await fg.api("GET", `${admin.base()}/subjects`);
    if (!reply.ok) { fg.show("admin-message", fg.failure(reply)); return; }
    admin.subjects = reply.data.subjects;
    admin.renderSubjects();
  },

  renderSubjects() {
    const words = document.getElementById("filter").value.trim().toLowerCase();
    const body = fg.clear(document.getElementById("subjects"));
    const shown = admin.subjects.filter((s) => !words || [s.info.display_name, s.info.category, s.subject_id].join(" ").toLowerCase().includes(words));
    for (const s of shown) {
      body.append(fg.el("tr", { "data-subject": s.subject_id },
        fg.el("td", {}, s.info.display_name || "–"), fg.el("td", {}, s.info.category || "–"), fg.el("td", {}, fg.el("code", {}, s.subject_id)),
        fg.el("td", {}, s.templates.length), fg.el("td", {}, fg.when(s.created_at)),
        fg.el("td", {}, fg.el("button", { class: "danger", onclick: () => admin.askRemove(s) }, "Remove"))));
    }
    document.getElementById("subject-count").textContent = `${shown.length} of ${admin.subjects.length}`;
  },

  askRemove(subject) {
    admin.pendingRemoval = subject;
    document.getElementById("remove-name").textContent = subject.info.display_name || subject.subject_id;
    document.getElementById("remove-list").textContent = admin.list();
    document.getElementById("confirm-remove").showModal();
  },

  async remove() {
    const subject = admin.pendingRemoval;
    document.getElementById("confirm-remove").close();
    const reply = await fg.api("DELETE", `${admin.base()}/subjects/${encodeURIComponent(subject.subject_id)}`);
    if (!reply.ok) { fg.show("admin-message", fg.failure(reply)); return; }
    fg.show("admin-message", `Removed ${subject.info.display_name || subject.subject_id}.`, "info");
    await admin.loadLists(admin.list());
  },

  async checkPhotos() {
    const files = [...document.getElementById("enrol-photos").files];
    const list = fg.clear(document.getElementById("enrol-checks"));
    document.getElementById("enrol-run").disabled = true;
    if (!files.length) return;
    const form = new FormData();
    for (const f of files) form.append("photos", f);
    list.append(fg.el("li", {}, "checking…"));
    const reply = await fg.api("POST", "/api/photos/check", form);
    fg.clear(list);
    if (!reply.ok) { list.append(fg.el("li", { class: "bad" }, fg.failure(reply))); return; }
    reply.data.photos.forEach((p, i) => {
      const text = p.acceptable ? "good: one face, every quality check passed" : p.problem;
      list.append(fg.el("li", { class: p.acceptable ? "ok" : "bad" }, `${files[i].name}: ${text}`));
    });
    document.getElementById("enrol-run").disabled = !reply.data.photos.every((p) => p.acceptable);
  },

  form(photos, fields) {
    const form = new FormData();
    for (const p of photos) form.append("photos", p);
    for (const [k, v] of Object.entries(fields)) form.append(k, v);
    return form;
  },

  async enrol() {
    const fields = {
      display_name: document.getElementById("enrol-name").value, category: document.getElementById("enrol-category").value,
      reason: document.getElementById("enrol-reason").value, external_ref: document.getElementById("enrol-ref").value,
    };
    const reply = await fg.api("POST", `${admin.base()}/subjects`, admin.form(document.getElementById("enrol-photos").files, fields));
    if (!reply.ok) { fg.show("enrol-message", fg.failure(reply)); return; }
    fg.show("enrol-message", `Enrolled ${fields.display_name} as ${reply.data.subject.subject_id}.`, "info");
    await admin.loadLists(admin.list());
  },

  groups(files) {
    const out = new Map();
    for (const f of files) {
      const parts = (f.webkitRelativePath || "").split("/");
      const name = parts.length > 2 ? parts[parts.length - 2] : f.name.replace(/\.[^.]+$/, "").replace(/_\d+$/, "");
      if (!out.has(name)) out.set(name, []);
      out.get(name).push(f);
    }
    return out;
  },

  async bulkImport() {
    const groups = admin.groups([...document.getElementById("import-files").files]);
    const bar = document.getElementById("import-progress"), status = document.getElementById("import-status");
    const failures = fg.clear(document.getElementById("import-failures"));
    bar.max = groups.size; bar.value = 0; bar.classList.remove("hidden");
    let done = 0, failed = 0;
    for (const [name, photos] of groups) {
      const display = name.replaceAll("_", " ");
      const reply = await fg.api("POST", `${admin.base()}/subjects`, admin.form(photos, { display_name: display, category: "wanted" }));
      done += 1; bar.value = done;
      if (!reply.ok) { failed += 1; failures.append(fg.el("li", { class: "bad" }, `${display}: ${fg.failure(reply)}`)); }
      status.textContent = `${done} of ${groups.size} subjects · ${failed} refused`;
    }
    status.textContent = `Import finished: ${done - failed} enrolled, ${failed} refused, of ${groups.size}.`;
    await admin.loadLists(admin.list());
  },

  async createList() {
    const name = document.getElementById("new-list-name").value.trim();
    const reply = await fg.api("POST", "/api/watchlists", {
      name, kind: document.getElementById("new-list-kind").value, description: document.getElementById("new-list-description").value,
    });
    if (!reply.ok) { fg.show("admin-message", fg.failure(reply)); return; }
    fg.show("admin-message", `Created ${name}.`, "info");
    await admin.loadLists(name);
  },
};

fg.init("admin").then(async (me) => {
  if (!me) return;
  document.getElementById("watchlist").addEventListener("change", () => admin.loadLists(admin.list()));
  document.getElementById("filter").addEventListener("input", admin.renderSubjects);
  document.getElementById("remove-yes").addEventListener("click", admin.remove);
  document.getElementById("remove-no").addEventListener("click", () => document.getElementById("confirm-remove").close());
  document.getElementById("enrol-photos").addEventListener("change", admin.checkPhotos);
  document.getElementById("enrol-run").addEventListener("click", admin.enrol);
  document.getElementById("import-run").addEventListener("click", admin.bulkImport);
  document.getElementById("new-list-run").addEventListener("click", admin.createList);
  await admin.loadLists();
});
