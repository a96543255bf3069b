"use strict";
document.getElementById("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const token = document.querySelector('meta[name="fg-login-csrf"]').content;
  const key = document.getElementById("key").value;
  const reply = await fg.api("POST", "/api/login", { key }, { "X-CSRF-Token": token });
  if (reply.ok) location.assign(reply.data.home);
  else fg.show("login-message", fg.failure(reply));
});
