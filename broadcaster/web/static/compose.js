// Compose page: ticks the route's channels for the chosen kind and shows a live per-channel
// preview from /ui/preview. User text is only ever set with textContent.
(function () {
  "use strict";
  var form = document.getElementById("compose-form");
  if (!form) return;
  var csrf = document.querySelector('meta[name="csrf-token"]').content;
  var routes = JSON.parse(document.getElementById("routes").textContent || "{}");
  var out = document.getElementById("preview");
  var status = document.getElementById("preview-status");
  var kind = document.getElementById("kind");
  var severity = document.getElementById("severity-field");
  var windowField = document.getElementById("window-field");
  var nextField = document.getElementById("next-update-field");
  var seq = 0, timer = null;

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function utc(v) { return v && !/(Z|[+-]\d\d:?\d\d)$/i.test(v) ? v + "Z" : v; }

  function ticked() {
    return Array.prototype.map.call(form.querySelectorAll('input[name="channels"]:checked'), function (c) { return c.value; });
  }

  function gather() {
    var data = { kind: kind.value, title: form.title.value, body: form.body.value, channels: ticked(), variants: {} };
    if (form.url.value.trim()) data.url = form.url.value.trim();
    if (kind.value === "incident" && form.severity.value) data.severity = form.severity.value;
    if (kind.value === "incident" && form.next_update_at.value) data.next_update_at = form.next_update_at.value;
    var comps = Array.prototype.map.call(form.querySelectorAll('input[name="components"]:checked'),
      function (c) { return c.value; });
    if (comps.length) data.components = comps;
    form.querySelectorAll("select[data-component]").forEach(function (s) {
      if (!s.value) return;  // empty: the severity decides
      data.component_states = data.component_states || {};
      data.component_states[s.getAttribute("data-component")] = s.value;
    });
    if (kind.value === "maintenance" && (form.starts_at.value || form.ends_at.value)) {
      // datetime-local has no zone; the form says UTC (the server reads it the same way)
      data.window = { starts_at: utc(form.starts_at.value), ends_at: utc(form.ends_at.value) };
    }
    form.querySelectorAll("[data-variant]").forEach(function (f) {
      var ch = f.getAttribute("data-channel");
      if (!f.value.trim() || data.channels.indexOf(ch) < 0) return;
      data.variants[ch] = data.variants[ch] || {};
      data.variants[ch][f.getAttribute("data-variant")] = f.value;
    });
    return data;
  }

  function render(channels) {
    out.replaceChildren();
    channels.forEach(function (c) {
      var box = el("div", "pv");
      box.setAttribute("data-channel", c.channel);
      var head = el("h3");
      head.appendChild(el("span", null, c.channel + " (" + c.kind + ")"));
      var parts = c.parts || [];
      var summary = parts.length > 1 ? parts.length + "-part thread" : (parts.length ? "1 part" : "");
      head.appendChild(el("small", null, summary));
      box.appendChild(head);
      if (c.error) box.appendChild(el("p", "err", c.error));
      parts.forEach(function (p, i) {
        var len = (c.lengths || [])[i];
        var over = c.limit && len > c.limit;
        var count = el("div", "count" + (over ? " over" : ""), (parts.length > 1 ? "part " + (i + 1) + ": " : "") +
          len + (c.limit ? " / " + c.limit : "") + " characters");
        count.setAttribute("data-length", String(len));
        box.appendChild(count);
        box.appendChild(el("div", "part", p));
      });
      out.appendChild(box);
    });
  }

  function refresh() {
    var mine = ++seq;
    var data = gather();
    if (!data.title.trim() && !data.body.trim()) { out.replaceChildren(); status.textContent = "Type a title to see each channel's text, length and thread split."; return; }
    status.textContent = "Updating…";
    fetch("/ui/preview", { method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf }, body: JSON.stringify(data) })
      .then(function (r) { return r.json().then(function (j) { return { ok: r.ok, body: j }; }); })
      .then(function (res) {
        if (mine !== seq) return;
        if (!res.ok) { status.textContent = (res.body.error && res.body.error.message) || "Preview unavailable."; return; }
        status.textContent = "As each channel will post it:";
        render(res.body.channels || []);
      })
      .catch(function () { if (mine === seq) status.textContent = "Preview unavailable (server unreachable)."; });
  }

  function later() { clearTimeout(timer); timer = setTimeout(refresh, 250); }

  function onKind() {
    var route = routes[kind.value] || [];
    form.querySelectorAll('input[name="channels"]').forEach(function (c) { c.checked = route.indexOf(c.value) >= 0; });
    severity.hidden = kind.value !== "incident";
    nextField.hidden = kind.value !== "incident";
    windowField.hidden = kind.value !== "maintenance";
    later();
  }

  // choosing a component's state means it is affected: tick it (without script the server says so)
  form.querySelectorAll("select[data-component]").forEach(function (s) {
    s.addEventListener("change", function () {
      if (!s.value) return;
      form.querySelectorAll('input[name="components"]').forEach(function (c) {
        if (c.value === s.getAttribute("data-component")) c.checked = true;
      });
    });
  });
  kind.addEventListener("change", onKind);
  form.addEventListener("input", later);
  form.addEventListener("change", later);
  severity.hidden = kind.value !== "incident";
  nextField.hidden = kind.value !== "incident";
  windowField.hidden = kind.value !== "maintenance";
  refresh();
})();
