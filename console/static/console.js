// BreachWatch console: live refresh, relative times and keyboard shortcuts.
// Served from the console's own origin (the pages' Content-Security-Policy allows no other
// script and no inline script); every page works without it.
(function () {
  "use strict";
  var POLL_MS = 10000;

  // --- relative times: "5 min ago", the absolute time stays in the title ---------------------
  function relative(iso) {
    var seconds = (Date.parse(iso) - Date.now()) / 1000;
    var ahead = seconds > 0, span = Math.abs(seconds), text;
    if (span < 45) return ahead ? "in a moment" : "just now";
    if (span < 3600) text = Math.max(1, Math.round(span / 60)) + " min";
    else if (span < 2 * 86400) text = Math.round(span / 3600) + " h";
    else text = Math.round(span / 86400) + " days";
    return ahead ? "in " + text : text + " ago";
  }
  function refreshTimes(root) {
    (root || document).querySelectorAll("time[datetime]").forEach(function (t) {
      t.textContent = relative(t.getAttribute("datetime"));
    });
  }

  // --- live refresh ----------------------------------------------------------------------------
  function note(text) {
    var el = document.querySelector(".live-note");
    if (!el) {
      el = document.createElement("div");
      el.className = "live-note";
      el.setAttribute("role", "status");
      document.body.appendChild(el);
    }
    el.textContent = text;
  }
  function busy(root) {
    // Never swap a form someone is filling in: its text would be lost.
    var active = document.activeElement;
    if (active && root.contains(active) && /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName)) return true;
    var fields = root.querySelectorAll("textarea, input:not([type=hidden]):not([type=checkbox])");
    for (var i = 0; i < fields.length; i++) {
      if (fields[i].value !== fields[i].defaultValue) return true;
    }
    var boxes = root.querySelectorAll("input[type=checkbox]");
    for (var j = 0; j < boxes.length; j++) {
      if (boxes[j].checked !== boxes[j].defaultChecked) return true;
    }
    return root.querySelector("details[open]") !== null;
  }
  function swap(root) {
    fetch(location.href, { credentials: "same-origin", headers: { "X-Live": "1" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.querySelector("[data-live]");
        if (!fresh) return;
        var selected = current ? current.getAttribute("data-incident") : null;
        root.innerHTML = fresh.innerHTML;
        refreshTimes(root);
        rows = Array.prototype.slice.call(document.querySelectorAll("[data-row]"));
        if (selected) select(rows.filter(function (r) { return r.getAttribute("data-incident") === selected; })[0]);
        root.setAttribute("data-updated", String(Date.now()));
      });
  }
  function watch(root) {
    var url = root.getAttribute("data-live"), version = null;
    function poll() {
      if (document.hidden) return;
      fetch(url, { credentials: "same-origin" })
        .then(function (r) {
          if (r.status === 401) { note("Your session ended: reload to sign in again."); return null; }
          return r.ok ? r.json() : null;
        })
        .then(function (state) {
          if (!state || !state.version) return;
          if (version !== null && state.version !== version) {
            if (busy(root)) note("This page has changed: reload to see it (your unsent text is kept until then).");
            else swap(root);
          }
          version = state.version;
        })
        .catch(function () {});
    }
    poll();
    setInterval(poll, POLL_MS);
  }

  // --- keyboard: j/k move, o or Enter open, x tick, a acknowledge, / search, ? help ---------------
  var rows = [], current = null;
  function select(row) {
    if (!row) return;
    if (current) current.classList.remove("is-selected");
    current = row;
    row.classList.add("is-selected");
    row.scrollIntoView({ block: "nearest" });
  }
  function move(step) {
    if (!rows.length) return;
    var i = rows.indexOf(current);
    select(rows[Math.min(rows.length - 1, Math.max(0, i < 0 ? 0 : i + step))]);
  }
  function acknowledge() {
    var button = document.querySelector("[data-key=a]");
    if (button) { button.click(); return; }
    var bulk = document.querySelector("#bulk button[value=acknowledge]");
    var box = current && current.querySelector("input[type=checkbox]");
    if (bulk && box) { box.checked = true; bulk.click(); }
  }
  function onKey(e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    var t = e.target;
    if (t && (/^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName) || t.isContentEditable)) return;
    var help = document.getElementById("help");
    switch (e.key) {
      case "j": move(1); break;
      case "k": move(-1); break;
      case "o": case "Enter":
        if (!current) return;
        var link = current.querySelector("[data-open]");
        if (link) link.click();
        break;
      case "x":
        var box = current && current.querySelector("input[type=checkbox]");
        if (box) box.checked = !box.checked;
        break;
      case "a": acknowledge(); break;
      case "/":
        var search = document.getElementById("site-search");
        if (search) search.focus();
        break;
      case "?":
        if (help && !help.open) help.showModal();
        break;
      default: return;
    }
    e.preventDefault();
  }

  document.addEventListener("DOMContentLoaded", function () {
    rows = Array.prototype.slice.call(document.querySelectorAll("[data-row]"));
    refreshTimes(document);
    setInterval(function () { refreshTimes(document); }, 60000);
    var live = document.querySelector("[data-live]");
    if (live) watch(live);
    document.addEventListener("keydown", onKey);
  });
})();
