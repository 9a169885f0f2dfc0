"""
The status page's script: plain JavaScript, no framework, no outside file. It draws the
page from the documents the server put in it, and fetches /stations and /alerts again to
search, filter, show more and refresh. Text goes into the page with C{textContent} only.
"""

SCRIPT = r"""
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("data").textContent);
  function byId(id) { return document.getElementById(id); }
  var form = byId("find"), q = byId("q"), state = byId("state"), list = byId("stations"), more = byId("more");
  var stations = data.stations, alerts = data.alerts, shown = [], request = 0, typing = null;
  var PAGE = 100, MAX_PAGE = 1000;
  var LABELS = {connected: "Connected", offline: "Offline", faulted: "Faulted", charging: "Charging"};
  var LINKS = {connected: "connected", reconnecting: "reconnecting", given_up: "given up"};
  var STATUS = {Available: "ok", Charging: "busy", Occupied: "ok", Preparing: "warn", SuspendedEV: "warn",
    SuspendedEVSE: "warn", Finishing: "warn", Reserved: "warn", Unavailable: "bad", Faulted: "bad"};
  var OUTCOMES = {sent: "ok", failed: "bad", dropped: "bad", pending: "warn"};

  function add(parent, tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined && text !== null) { node.textContent = text; }
    parent.appendChild(node);
    return node;
  }
  function when(iso) { return iso ? iso.slice(0, 19).replace("T", " ") + " UTC" : "-"; }
  function seconds(iso) { return Date.parse(iso) / 1000; }
  function count(n) { return n.toLocaleString("en"); }
  function total(links) { return links.connected + links.reconnecting + links.given_up; }
  function duration(s) {
    s = Math.max(0, Math.round(s));
    if (s < 60) { return s + " s"; }
    var m = Math.floor(s / 60), h = Math.floor(m / 60);
    if (m < 60) { return m + " min"; }
    if (h < 48) { return h + " h " + (m % 60) + " min"; }
    return Math.floor(h / 24) + " d " + (h % 24) + " h";
  }

  function drawCounts() {
    var tiles = byId("counts"), counts = stations.counts;
    tiles.textContent = "";
    Object.keys(LABELS).forEach(function (key) {
      var tile = add(tiles, "a", "tile t-" + key + (state.value === key ? " on" : ""));
      tile.href = "?state=" + key;
      tile.dataset.state = key;
      add(tile, "b", null, count(counts[key]));
      add(tile, "span", null, LABELS[key]);
    });
    var tile = add(tiles, "a", "tile t-alerts");
    tile.href = "#alerts";
    tile.dataset.state = "alerts";
    add(tile, "b", null, count(alerts.last_hour));
    add(tile, "span", null, "Alerts 1 h");
    var ups = byId("upstreams");
    ups.textContent = "";
    Object.keys(stations.upstreams).forEach(function (name) {
      var links = stations.upstreams[name], line = add(ups, "div");
      add(line, "b", null, name + " links: ");
      add(line, "span", "ok", count(links.connected) + " connected");
      add(line, "span", null, " \u00b7 ");
      add(line, "span", links.reconnecting ? "warn" : null, count(links.reconnecting) + " reconnecting");
      add(line, "span", null, " \u00b7 ");
      add(line, "span", links.given_up ? "bad" : null, count(links.given_up) + " given up");
      var roles = links.roles || {}, parts = Object.keys(roles).filter(function (role) {
        return total(roles[role]);
      }).map(function (role) { return role + " of " + count(total(roles[role])); });
      if (parts.length) { add(line, "span", "role", " (" + parts.join(", ") + ")"); }
    });
    byId("meta").textContent = "Updated " + when(stations.time) + " \u00b7 refreshes every " + data.refresh + " s";
    drawScope();
  }

  function drawScope() {
    var scope = byId("scope"), cluster = stations.cluster;
    if (!scope || !cluster) { return; }
    var here = stations.instance, others = Object.keys(cluster.connected).filter(function (name) {
      return name !== here;
    }).sort();
    scope.className = "meta " + cluster.view;
    scope.dataset.view = cluster.view;
    if (cluster.view === "local") {
      scope.textContent = "Instance " + here + " \u00b7 local view: " + cluster.reason
        + " \u00b7 the counts and stations are this instance's only";
      return;
    }
    var parts = [count(cluster.connected[here] || 0) + " here"].concat(others.map(function (name) {
      return count(cluster.connected[name]) + " on " + name;
    }));
    scope.textContent = "Instance " + here + " \u00b7 cluster view: connected " + parts.join(", ")
      + " \u00b7 faulted and charging count this instance's stations";
  }

  function elsewhere(station) {
    return station.instance && station.instance !== stations.instance ? station.instance : null;
  }

  function stateText(station, now) {
    if (station.state !== "offline") {
      return elsewhere(station) ? "connected elsewhere (" + station.instance + ")" : station.state;
    }
    if (station.left) { return "offline for " + duration(now - seconds(station.left)); }
    return station.instance ? "offline, last connected on " + station.instance : "offline, not seen since start-up";
  }

  function card(station, now) {
    var box = document.createElement("div");
    box.className = "station st-" + station.state;
    box.dataset.id = station.id;
    box.dataset.state = station.state;
    add(box, "h3", null, station.name || station.id);
    var where = station.name ? [station.id] : [];
    if (station.remote) { where.push(station.remote, station.subprotocol || "-"); }
    if (where.length) { add(box, "div", "id", where.join(" \u00b7 ")); }
    var badges = add(box, "div", "row");
    add(badges, "span", "badge s-" + station.state, stateText(station, now));
    Object.keys(station.upstreams).sort(function (a, b) {
      return (station.upstreams[a].role === "primary" ? 0 : 1) - (station.upstreams[b].role === "primary" ? 0 : 1);
    }).forEach(function (name) {
      var link = station.upstreams[name], label = LINKS[link.state] || link.state;
      if (link.state === "reconnecting" && link.failed_attempts) { label += ", " + link.failed_attempts + " failed"; }
      if (link.queued) { label += ", " + link.queued + " queued"; }
      var badge = add(badges, "span", "badge " + link.state, name + " (" + link.role + "): " + label);
      badge.dataset.upstream = name;
      badge.dataset.role = link.role;
    });
    Object.keys(station.outbox || {}).sort().forEach(function (name) {
      var backlog = station.outbox[name];
      var badge = add(badges, "span", "badge reconnecting", name + ": " + backlog.entries + " in the outbox");
      badge.dataset.outbox = name;
    });
    var places = Object.keys(station.connectors).sort();
    if (places.length) {
      var connectors = add(box, "div", "row");
      places.forEach(function (place, index) {
        var status = station.connectors[place], error = status.errorCode;
        if (index) { add(connectors, "span", null, " \u00b7 "); }
        add(connectors, "span", null, "Connector " + place + " ");
        add(connectors, "span", STATUS[status.status] || null,
          status.status + (error && error !== "NoError" ? " (" + error + ")" : ""));
      });
    }
    var times = station.connected_since ? "Connected since " + when(station.connected_since)
      : station.left ? "Left " + when(station.left) : station.instance ? "Left: unknown" : "Not seen since start-up";
    if (station.state === "offline" && station.instance) { times += " (" + station.instance + ")"; }
    add(box, "div", "row", times + " \u00b7 last message " + when(station.last_message));
    return box;
  }

  function drawStations(doc, append) {
    var now = seconds(doc.time), batch = document.createDocumentFragment();
    if (!append) { list.textContent = ""; shown = []; }
    doc.stations.forEach(function (station) { batch.appendChild(card(station, now)); });
    list.appendChild(batch);
    shown = shown.concat(doc.stations);
    byId("shown").textContent = doc.total ? "Showing " + count(shown.length) + " of " + count(doc.total)
      + " station" + (doc.total === 1 ? "" : "s") : "No station matches.";
    more.hidden = shown.length >= doc.total;
  }

  function drawAlerts() {
    var box = byId("alerts");
    box.textContent = "";
    if (!alerts.alerts.length) { add(box, "p", "empty", "No alert since start-up."); return; }
    var table = add(box, "table"), head = add(table, "tr");
    ["Time", "Station", "Kind", "Channels"].forEach(function (title) { add(head, "th", null, title); });
    alerts.alerts.forEach(function (alert) {
      var row = add(table, "tr");
      row.title = alert.subject;
      add(row, "td", null, when(alert.time));
      add(row, "td", null, alert.station ? (alert.name ? alert.name + " (" + alert.station + ")" : alert.station)
        : "several stations");
      add(row, "td", null, alert.kind);
      var cell = add(row, "td"), channels = Object.keys(alert.channels);
      if (!channels.length) { add(cell, "span", "empty", "no channel"); }
      channels.forEach(function (channel, index) {
        if (index) { add(cell, "span", null, ", "); }
        add(cell, "span", OUTCOMES[alert.channels[channel]] || null, channel + " " + alert.channels[channel]);
      });
    });
  }

  function fetchJson(url) {
    return fetch(url, {cache: "no-store"}).then(function (response) {
      if (!response.ok) { throw new Error(url + ": HTTP " + response.status); }
      return response.json();
    });
  }

  function load(offset, limit, append) {
    var mine = ++request, query = new URLSearchParams({q: q.value, state: state.value, offset: offset, limit: limit});
    return fetchJson("/stations?" + query).then(function (doc) {
      if (mine !== request) { return; }
      stations = doc;
      drawStations(doc, append);
      drawCounts();
    }).catch(function (error) {
      byId("meta").textContent =
        "Cannot read the status (" + error.message + "); trying again in " + data.refresh + " s";
    });
  }

  function search() {
    var query = new URLSearchParams();
    if (q.value.trim()) { query.set("q", q.value.trim()); }
    if (state.value) { query.set("state", state.value); }
    history.replaceState(null, "", query.toString() ? "?" + query : location.pathname);
    load(0, PAGE, false);
  }

  function refresh() {
    if (document.hidden) { return; }
    fetchJson("/alerts").then(function (doc) { alerts = doc; drawAlerts(); drawCounts(); })
      .catch(function () { return null; });
    load(0, Math.min(Math.max(shown.length, PAGE), MAX_PAGE), false);
  }

  q.addEventListener("input", function () { clearTimeout(typing); typing = setTimeout(search, 200); });
  state.addEventListener("change", search);
  form.addEventListener("submit", function (event) { event.preventDefault(); clearTimeout(typing); search(); });
  more.addEventListener("click", function () { load(shown.length, PAGE, true); });
  byId("counts").addEventListener("click", function (event) {
    var tile = event.target.closest("a.tile");
    if (!tile || tile.dataset.state === "alerts") { return; }
    event.preventDefault();
    state.value = state.value === tile.dataset.state ? "" : tile.dataset.state;
    search();
  });

  drawStations(stations, false);
  drawCounts();
  drawAlerts();
  document.body.dataset.renderedMs = performance.now().toFixed(1);
  setInterval(refresh, data.refresh * 1000);
}());
"""
