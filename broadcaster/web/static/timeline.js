// Announcement page: re-reads /ui/announcements/<id> every 2 s and redraws the per-channel
// timeline. Everything from the server is set with textContent / setAttribute, never as HTML.
(function () {
  "use strict";
  var root = document.getElementById("announcement");
  var box = document.getElementById("timeline");
  if (!root || !box) return;
  var id = root.getAttribute("data-id");
  var csrf = document.querySelector('meta[name="csrf-token"]').content;
  var live = document.getElementById("live");
  var RETRYABLE = ["failed", "unknown", "fallen_back"];

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function when(s) { return s ? String(s).replace("T", " ").split(".")[0].replace(/Z$/, "") + "Z" : ""; }
  function isLink(u) { return typeof u === "string" && /^https?:\/\//.test(u); }
  function cell(label, child) { var td = el("td"); if (label) td.setAttribute("data-label", label); if (child) td.appendChild(child); return td; }

  function row(d, retracted) {
    var tr = el("tr"); tr.setAttribute("data-delivery", d.id);
    var name = el("span", null, d.channel);
    var c1 = cell("Channel", name);
    if (d.fallback_of) c1.appendChild(el("small", null, " (fallback)"));
    tr.appendChild(c1);
    var badge = el("span", "badge " + d.state, d.state); badge.setAttribute("data-state", "");
    tr.appendChild(cell("State", badge));
    tr.appendChild(cell("Tries", document.createTextNode(String(d.attempts))));
    var link = null;
    if (d.state === "retracted" && d.current_error) link = el("span", "err", d.current_error);  // still up
    else if (isLink(d.remote_url)) { link = el("a", null, d.remote_url); link.href = d.remote_url; link.rel = "noopener noreferrer"; }
    else if (d.current_error) link = el("span", "err", d.current_error);
    tr.appendChild(cell("Link", link));
    var act = cell(null);
    if (RETRYABLE.indexOf(d.state) >= 0 && !retracted) {
      var f = el("form", "inline"); f.method = "post"; f.action = "/deliveries/" + encodeURIComponent(d.id) + "/retry";
      var h = el("input"); h.type = "hidden"; h.name = "csrf"; h.value = csrf; f.appendChild(h);
      var b = el("button", "small", "Retry"); b.type = "submit"; f.appendChild(b);
      act.appendChild(f);
    }
    if (d.state === "unknown" && !retracted) {
      var g = el("form", "inline"); g.method = "post"; g.action = "/deliveries/" + encodeURIComponent(d.id) + "/confirm";
      var h2 = el("input"); h2.type = "hidden"; h2.name = "csrf"; h2.value = csrf; g.appendChild(h2);
      var c = el("button", "small", "It's there"); c.type = "submit"; c.title = "You found the post on the channel";
      g.appendChild(c); act.appendChild(g);
    }
    tr.appendChild(act);
    var ev = el("tr", "events"); var td = el("td"); td.colSpan = 5;
    var det = el("details"); det.appendChild(el("summary", null, (d.events || []).length + " events"));
    var ol = el("ol");
    (d.events || []).forEach(function (e) {
      ol.appendChild(el("li", null, when(e.at) + " · " + (e.from || "—") + " → " + e.to + " (try " + e.attempt + "): " + e.reason));
    });
    det.appendChild(ol); td.appendChild(det); ev.appendChild(td);
    return [tr, ev];
  }

  function draw(data) {
    var byId = {};
    (data.deliveries || []).forEach(function (d) { byId[d.id] = d; });
    var open = {};
    box.querySelectorAll("details[open]").forEach(function (d) {
      var tr = d.closest("tr.events"); var prev = tr && tr.previousElementSibling;
      if (prev) open[prev.getAttribute("data-delivery")] = true;
    });
    var frag = document.createDocumentFragment();
    (data.groups || []).forEach(function (g) {
      frag.appendChild(el("h3", null, g.label));
      var table = el("table", "list timeline");
      var head = el("thead"); var hr = el("tr");
      ["Channel", "State", "Tries", "Link / last error", ""].forEach(function (h) { hr.appendChild(el("th", null, h)); });
      head.appendChild(hr); table.appendChild(head);
      var body = el("tbody");
      g.deliveries.forEach(function (did) {
        var rows = row(byId[did], !!data.retracted_at);
        if (open[did]) rows[1].querySelector("details").open = true;
        body.appendChild(rows[0]); body.appendChild(rows[1]);
      });
      table.appendChild(body); frag.appendChild(table);
    });
    box.replaceChildren(frag);
    var overall = document.getElementById("overall");
    overall.textContent = data.overall; overall.className = "badge " + data.overall;
    document.getElementById("ann-status").textContent = data.status || "—";
  }

  function poll() {
    if (document.hidden) { setTimeout(poll, 2000); return; }
    fetch("/ui/announcements/" + encodeURIComponent(id), { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { if (!r.ok) throw new Error(String(r.status)); return r.json(); })
      .then(function (data) {
        draw(data);
        live.textContent = "live · updated " + new Date().toLocaleTimeString();
        setTimeout(poll, 2000);
      })
      .catch(function () { live.textContent = "reconnecting…"; setTimeout(poll, 4000); });
  }
  setTimeout(poll, 1000);
})();
