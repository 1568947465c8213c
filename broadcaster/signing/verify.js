"use strict";
// The status site's verify page. The text rules are those of broadcaster/signing/textmatch.py,
// line for line (normalize, unthread, compare); the texts a genuine post may have come from the
// signature file ("readable", computed by the same Python). tests/unit/test_verify_text.py runs
// both over one table. Positions count code points, as Python does.

const WS_RUN = /[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]+/g;
const MARK = / \(([0-9]{1,3})\/([0-9]{1,3})\)(?= |$)/g;
const EXCERPT = 40;
const ID_IN_LINK = /verify(?:\.html\?|:\s*\S*?[?&])id=([A-Za-z0-9_.%-]+)/i;

function normalize(text) {
  return text.normalize("NFC").replace(WS_RUN, " ").replace(/^ +| +$/g, "");
}

function unthread(text) {
  const marks = Array.from(text.matchAll(MARK));
  if (!marks.length) return [text, null];
  const n = parseInt(marks[marks.length - 1][2], 10);
  const own = marks.filter((m) => parseInt(m[2], 10) === n);
  const numbers = own.map((m) => parseInt(m[1], 10));
  const inOrder = numbers.length === n && numbers.every((x, i) => x === i + 1);
  if (!inOrder) {
    const missing = [];
    for (let i = 1; i <= n; i++) if (!numbers.includes(i)) missing.push(String(i));
    if (missing.length) return [text, "part " + missing.join(", ") + " of the " + n + "-part thread is missing: paste every part, in order"];
    return [text, "the thread parts are not in order 1/" + n + " ... " + n + "/" + n + ": paste every part, in order"];
  }
  let out = "", pos = 0;
  for (const m of own) { out += text.slice(pos, m.index); pos = m.index + m[0].length; }
  return [out + text.slice(pos), null];
}

function cut(chars, from) { return chars.slice(from, from + EXCERPT).join(""); }

// expected: [[document id, text], ...] -> {ok, reason, entry}
function compare(pasted, expected) {
  const text = normalize(pasted);
  if (!text) return {ok: false, reason: "there is no text to compare", entry: null};
  if (!expected.length) return {ok: false, reason: "there is no signed text to compare with", entry: null};
  for (const [entry, want] of expected) {
    if (text === want) return {ok: true, reason: "the text is exactly what we signed (" + entry + ")", entry: entry};
  }
  const [joined, problem] = unthread(text);
  if (problem) return {ok: false, reason: problem, entry: null};
  for (const [entry, want] of expected) {
    if (joined === want) return {ok: true, reason: "the thread, put together, is exactly what we signed (" + entry + ")", entry: entry};
  }
  const got = Array.from(joined);
  let best = Array.from(expected[0][1]), at = -1;
  for (const [, want] of expected) {
    const w = Array.from(want);
    let i = 0;
    while (i < got.length && i < w.length && got[i] === w[i]) i++;
    if (i > at) { best = w; at = i; }
  }
  let reason;
  if (at === got.length) reason = "the text stops at character " + at + ", but the signed text goes on: \"" + cut(best, at) + "\"";
  else if (at === best.length) reason = "extra text after the signed text, from character " + (at + 1) + ": \"" + cut(got, at) + "\"";
  else {  // both excerpts start at the word the difference is in (at most 20 characters back)
    const start = Math.max((at === 0 ? -1 : got.lastIndexOf(" ", at - 1)) + 1, at - 20);
    reason = "the text differs from character " + (at + 1) + ": it has \"" + cut(got, start) + "\" where we signed \"" + cut(best, start) + "\"";
  }
  if (joined.includes("\u2026")) reason += " (a \"\u2026\" marks left-out text: only a complete post can be verified)";
  return {ok: false, reason: reason, entry: null};
}

// ---------------------------------------------------------------- the page

const WK = ".well-known/broadcaster/";
const DOMAIN = new TextEncoder().encode("broadcaster-signed-v1\n");

function unb64u(s) {
  s = s.replace(/-/g, "+").replace(/_/g, "/");
  while (s.length % 4) s += "=";
  return Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
}

function say(cls, text) {
  const p = document.createElement("p");
  p.className = cls;
  p.textContent = text;
  document.getElementById("out").appendChild(p);
}

async function signatureOk(entry, key) {
  const pub = await crypto.subtle.importKey("raw", unb64u(key.public), {name: "Ed25519"}, false, ["verify"]);
  const data = new Uint8Array([...DOMAIN, ...new TextEncoder().encode(entry.canonical)]);
  return crypto.subtle.verify({name: "Ed25519"}, pub, unb64u(entry.signature), data);
}

async function check(id, pasted) {
  document.getElementById("out").textContent = "";
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(id)) { say("bad", "\u2717 That is not an announcement id."); return; }
  let keys, sigs;
  try { keys = await (await fetch(WK + "keys.json", {cache: "no-store"})).json(); }
  catch (e) { say("bad", "\u2717 Cannot load our public keys."); return; }
  try {
    const r = await fetch(WK + "signatures/" + id + ".json", {cache: "no-store"});
    if (!r.ok) throw new Error(String(r.status));
    sigs = await r.json();
  } catch (e) { say("bad", "\u2717 NOT FOUND: no signed announcement " + id + " is published here. Treat the post as NOT from us."); return; }
  if (sigs.retracted_at) {
    say("bad", "\u2717 RETRACTED: we withdrew announcement " + id + " on " + sigs.retracted_at + ". It no longer stands; do not act on it.");
    return;
  }
  const byId = Object.fromEntries(keys.keys.map((k) => [k.id, k]));
  const lines = [], good = [], bad = [];
  for (const e of sigs.entries) {
    const k = byId[e.key_id];
    let ok = false, why = "signed with a key we do not know";
    if (k && k.status === "revoked") why = "signed with key " + e.key_id + ", which has been revoked";
    else if (k) {
      try { ok = await signatureOk(e, k); }
      catch (err) { say("bad", "\u2717 This browser cannot check Ed25519 signatures; run `broadcaster verify --id " + id + "`."); return; }
      why = ok ? "signed by key " + e.key_id + " (" + k.status + ")" +
        (e.resigned ? ", signed again on " + e.resigned.at + " after key " + e.resigned.from_key + " was revoked" : "")
        : "the signature does not match";
    }
    const doc = JSON.parse(e.canonical);
    lines.push([ok ? "ok" : "bad", (ok ? "\u2713 " : "\u2717 ") + doc.type + " " + doc.id + (doc.status ? " (" + doc.status + ")" : "") +
      ", " + doc.created_at + ": " + why, (doc.title || "") + "\n\n" + (doc.body || "") + (doc.url ? "\n\n" + doc.url : "")]);
    if (ok) good.push(e); else bad.push(why);
  }
  if (bad.length || !good.length) {
    say("bad", "\u2717 NOT GENUINE: " + (bad[0] || "nothing is signed") + ". Treat the post as NOT from us.");
  } else if (pasted.trim()) {
    const expected = [];
    for (const e of good) for (const t of e.readable || []) expected.push([e.id, t]);
    const r = compare(pasted, expected);
    say(r.ok ? "ok" : "bad", r.ok ? "\u2713 GENUINE: " + r.reason + "." : "\u2717 NOT GENUINE: " + r.reason + ". Treat the post as NOT from us.");
  } else {
    say("ok", "\u2713 Announcement " + id + " is signed by us. Compare what you saw with the signed text below, word for word.");
  }
  for (const [cls, text, body] of lines) {
    say(cls, text);
    const pre = document.createElement("pre");
    pre.textContent = body;
    document.getElementById("out").appendChild(pre);
  }
}

if (typeof document !== "undefined") {
  const params = new URLSearchParams(location.search);
  document.getElementById("f").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const pasted = document.getElementById("text").value;
    const m = pasted.match(ID_IN_LINK);
    check(document.getElementById("id").value.trim() || (m ? decodeURIComponent(m[1]) : ""), pasted);
  });
  if (params.get("id")) { document.getElementById("id").value = params.get("id"); check(params.get("id"), ""); }
}
