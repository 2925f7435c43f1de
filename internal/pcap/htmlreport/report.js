"use strict";
(function () {
  // Every value below comes from the capture: it reaches the page only
  // through textContent or numeric attributes, never as markup.
  var D = JSON.parse(document.getElementById("synscope-data").textContent);
  var S = D.strs, C = D.conns, PK = D.pkts;
  var F = {id: 0, t: 1, cli: 2, cport: 3, srv: 4, sport: 5, state: 6, hist: 7, verdict: 8, cause: 9, rto: 10,
    syns: 11, synacks: 12, rtt: 13, dur: 14, detail: 15, failed: 16, npk: 17, notes: 18};
  var ROW = 22;
  function s(i) { return i < 0 ? "" : S[i]; }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = String(text);
    return e;
  }
  function svg(tag, attrs, text) {
    var e = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (var k in attrs) e.setAttribute(k, String(attrs[k]));
    if (text !== undefined) e.textContent = String(text);
    return e;
  }
  function $(id) { return document.getElementById(id); }
  function hp(h, p) { return (h.indexOf(":") >= 0 ? "[" + h + "]" : h) + ":" + p; }
  function secs(ms) { return (ms / 1000).toFixed(3) + " s"; }

  // Totals and verdicts.
  $("file").textContent = D.file;
  var st = D.stats, sum = D.summary;
  var cards = $("cards");
  [["packets", st.packets], ["TCP packets", st.tcp_packets], ["connections", sum.connections],
   ["failed handshakes", sum.failed, sum.failed > 0], ["one direction only", sum.one_sided || 0],
   ["capture duplicates", st.capture_duplicates], ["untracked SYNs", st.untracked_syns || 0, (st.untracked_syns || 0) > 0]]
    .forEach(function (c) {
      var d = el("div", "card" + (c[2] ? " bad" : ""));
      var b = el("b", "", c[1]);
      b.id = "n-" + c[0].replace(/ /g, "-");
      d.appendChild(b);
      d.appendChild(el("span", "", c[0]));
      cards.appendChild(d);
    });
  var failedVerdict = {};
  C.forEach(function (c) { if (c[F.failed]) failedVerdict[s(c[F.verdict])] = true; });
  var chips = $("verdicts");
  (sum.by_verdict || []).forEach(function (v) {
    var b = el("button", "chip" + (failedVerdict[v.name] ? " f" : ""), v.name + ": " + v.count);
    b.type = "button";
    b.addEventListener("click", function () { $("verdict").value = v.name; applyFilter(); });
    chips.appendChild(b);
  });
  (D.warnings || []).concat(D.error ? ["read error: " + D.error] : []).forEach(function (w) {
    $("warnings").appendChild(el("li", "warn", w));
  });
  (D.causes || []).forEach(function (c) { $("causes").appendChild(el("li", "", c)); });
  if (D.pkcap) {
    $("limits").textContent = "Ladders show at most " + D.pkcap + " packets per connection.";
  }

  // Timeline of handshake outcomes.
  (function () {
    var span = 0;
    C.forEach(function (c) { if (c[F.t] > span) span = c[F.t]; });
    var bins = Math.max(1, Math.min(120, C.length)), w = 1000, h = 120;
    var ok = new Array(bins).fill(0), bad = new Array(bins).fill(0), other = new Array(bins).fill(0);
    var firstFail = -1;
    C.forEach(function (c) {
      var i = span > 0 ? Math.min(bins - 1, Math.floor(c[F.t] / span * bins)) : 0;
      var v = s(c[F.verdict]);
      if (c[F.failed]) { bad[i]++; if (firstFail < 0 || c[F.t] < firstFail) firstFail = c[F.t]; }
      else if (v === "established") ok[i]++;
      else other[i]++;
    });
    var max = 1;
    for (var i = 0; i < bins; i++) max = Math.max(max, ok[i] + bad[i] + other[i]);
    var g = $("timeline"), bw = w / bins;
    g.setAttribute("viewBox", "0 0 " + w + " " + (h + 24));
    for (i = 0; i < bins; i++) {
      var y = h;
      [[bad[i], "#c33", "failed"], [other[i], "#aaa", "other"], [ok[i], "#5a5", "established"]].forEach(function (p) {
        if (!p[0]) return;
        var bh = p[0] / max * h;
        y -= bh;
        var r = svg("rect", {x: (i * bw).toFixed(2), y: y.toFixed(2), width: Math.max(1, bw - 1).toFixed(2), height: bh.toFixed(2), fill: p[1]});
        r.appendChild(svg("title", {}, "+" + secs(i * span / bins) + ": " + p[0] + " " + p[2]));
        g.appendChild(r);
      });
    }
    g.appendChild(svg("text", {x: 2, y: h + 16}, "+0 s"));
    g.appendChild(svg("text", {x: w - 2, y: h + 16, "text-anchor": "end"}, "+" + secs(span)));
    g.appendChild(svg("text", {x: w / 2, y: h + 16, "text-anchor": "middle"},
      "connections by start time; green established, red failed, grey other; tallest bar " + max));
    $("firstfail").textContent = firstFail < 0 ? "No handshake failed." :
      "First failed handshake started at +" + secs(firstFail) + " (capture start " + new Date(D.t0 * 1000).toISOString() + ").";
  })();

  // Failures grouped by pattern: server:port × verdict × retry schedule.
  var patterns = (function () {
    var m = {}, list = [];
    C.forEach(function (c, i) {
      if (!c[F.failed]) return;
      var k = c[F.srv] + "|" + c[F.sport] + "|" + c[F.verdict] + "|" + c[F.rto];
      var p = m[k];
      if (!p) { p = m[k] = {srv: c[F.srv], port: c[F.sport], verdict: c[F.verdict], rto: c[F.rto], n: 0, first: c[F.t], last: c[F.t]}; list.push(p); }
      p.n++; p.first = Math.min(p.first, c[F.t]); p.last = Math.max(p.last, c[F.t]);
    });
    list.sort(function (a, b) { return b.n - a.n; });
    var tb = $("patterns");
    list.slice(0, 100).forEach(function (p) {
      var tr = el("tr", "r");
      [p.n, hp(s(p.srv), p.port), s(p.verdict), s(p.rto) || "-", "+" + secs(p.first), "+" + secs(p.last)].forEach(function (v) {
        tr.appendChild(el("td", "", v));
      });
      tr.addEventListener("click", function () { pattern = p; $("verdict").value = ""; $("q").value = ""; applyFilter(); });
      tb.appendChild(tr);
    });
    $("npatterns").textContent = list.length + " failure patterns" + (list.length > 100 ? " (the 100 largest shown)" : "");
    return list;
  })();

  // Connection table: sorted, filtered, virtualised.
  var cols = [["id", F.id], ["start", F.t], ["client", F.cli], ["server", F.srv], ["state", F.state], ["history", F.hist],
    ["verdict", F.verdict], ["SYNs", F.syns], ["RTT ms", F.rtt], ["duration", F.dur], ["detail", F.detail]];
  var strCol = {}; [F.cli, F.srv, F.state, F.hist, F.verdict, F.detail].forEach(function (f) { strCol[f] = true; });
  var hdr = $("hdr");
  cols.forEach(function (c, k) {
    var h = el("span", "", c[0]);
    h.addEventListener("click", function () { sortBy(k); });
    hdr.appendChild(h);
  });
  var vsel = $("verdict");
  (sum.by_verdict || []).forEach(function (v) { var o = el("option", "", v.name); o.value = v.name; vsel.appendChild(o); });
  var order = new Int32Array(C.length);
  for (var i = 0; i < C.length; i++) order[i] = i;
  var view = order, sortKey = 0, sortDir = 1, pattern = null, hay = null, selected = -1;
  function sortBy(k) {
    if (sortKey === k) sortDir = -sortDir; else { sortKey = k; sortDir = 1; }
    var f = cols[k][1], isStr = strCol[f];
    var a = Array.prototype.slice.call(order);
    a.sort(function (x, y) {
      var u = C[x][f], v = C[y][f];
      if (isStr) { u = s(u); v = s(v); }
      if (f === F.cli || f === F.srv) { if (u === v) { u = C[x][f + 1]; v = C[y][f + 1]; } }
      return (u < v ? -1 : u > v ? 1 : C[x][0] - C[y][0]) * sortDir;
    });
    order = Int32Array.from(a);
    Array.prototype.forEach.call(hdr.children, function (h, j) {
      h.textContent = cols[j][0] + (j === k ? (sortDir > 0 ? " \u25b2" : " \u25bc") : "");
    });
    applyFilter();
  }
  function text(i) {
    var c = C[i];
    return (hp(s(c[F.cli]), c[F.cport]) + " " + hp(s(c[F.srv]), c[F.sport]) + " " + s(c[F.state]) + " " + s(c[F.hist]) + " " +
      s(c[F.verdict]) + " " + s(c[F.cause]) + " " + s(c[F.detail]) + " " + s(c[F.notes]) + " #" + c[F.id]).toLowerCase();
  }
  function applyFilter() {
    var q = $("q").value.trim().toLowerCase(), v = vsel.value, fo = $("failedonly").checked;
    if (q && !hay) { hay = new Array(C.length); for (var j = 0; j < C.length; j++) hay[j] = text(j); }
    var out = [];
    for (var k = 0; k < order.length; k++) {
      var i = order[k], c = C[i];
      if (fo && !c[F.failed]) continue;
      if (v && s(c[F.verdict]) !== v) continue;
      if (pattern && (c[F.srv] !== pattern.srv || c[F.sport] !== pattern.port || c[F.verdict] !== pattern.verdict || c[F.rto] !== pattern.rto)) continue;
      if (q && hay[i].indexOf(q) < 0) continue;
      out.push(i);
    }
    view = out;
    $("shown").textContent = out.length + " of " + C.length + " connections" +
      (pattern ? " (pattern " + hp(s(pattern.srv), pattern.port) + " " + s(pattern.verdict) + ")" : "");
    $("clearpattern").hidden = !pattern;
    document.body.setAttribute("data-shown", String(out.length));
    $("spacer").style.height = (out.length * ROW) + "px";
    draw(true);
  }
  var pool = [], vp = $("viewport"), spacer = $("spacer");
  function row() {
    var r = el("div", "row");
    for (var k = 0; k < cols.length; k++) r.appendChild(el("span"));
    r.addEventListener("click", function () { showLadder(+r.getAttribute("data-i")); });
    spacer.appendChild(r);
    return r;
  }
  var pending = false;
  function draw(now) {
    if (!now) { if (!pending) { pending = true; requestAnimationFrame(function () { pending = false; draw(true); }); } return; }
    var first = Math.floor(vp.scrollTop / ROW), n = Math.ceil(vp.clientHeight / ROW) + 2;
    while (pool.length < n) pool.push(row());
    for (var k = 0; k < pool.length; k++) {
      var r = pool[k], j = first + k;
      if (k >= n || j >= view.length) { r.style.display = "none"; continue; }
      var i = view[j], c = C[i];
      r.style.display = "";
      r.style.top = (j * ROW) + "px";
      r.setAttribute("data-i", String(i));
      r.className = "row" + (c[F.failed] ? " f" : "") + (i === selected ? " sel" : "");
      var vals = [c[F.id], "+" + (c[F.t] / 1000).toFixed(3), hp(s(c[F.cli]), c[F.cport]), hp(s(c[F.srv]), c[F.sport]),
        s(c[F.state]), s(c[F.hist]), s(c[F.verdict]), c[F.syns], c[F.rtt] < 0 ? "" : c[F.rtt].toFixed(3),
        (c[F.dur] / 1000).toFixed(3), s(c[F.detail])];
      for (var m = 0; m < vals.length; m++) r.children[m].textContent = String(vals[m]);
    }
  }
  vp.addEventListener("scroll", function () { draw(false); });
  window.addEventListener("resize", function () { draw(false); });
  var timer = 0;
  $("q").addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(applyFilter, 120); });
  vsel.addEventListener("change", applyFilter);
  $("failedonly").addEventListener("change", applyFilter);
  $("clearpattern").addEventListener("click", function () { pattern = null; applyFilter(); });

  // Ladder of the chosen connection, drawn on demand.
  function unpack(str) {
    var out = [];
    if (!str) return out;
    str.split(";").forEach(function (pk) {
      var f = pk.split(",");
      for (var k = 0; k < 7; k++) out.push(f[k] === "" || f[k] === undefined ? -1 : +f[k]);
    });
    return out;
  }
  function showLadder(i) {
    selected = i;
    draw(true);
    var c = C[i], p = unpack(PK[i]), box = $("ladder");
    while (box.firstChild) box.removeChild(box.firstChild);
    $("ladderh").textContent = "Connection " + c[F.id] + ": " + s(c[F.verdict]) + " (conn_state " + s(c[F.state]) + ", history " + s(c[F.hist]) + ")";
    var info = [s(c[F.detail]), s(c[F.notes]), c[F.cause] >= 0 ? "cause: " + s(c[F.cause]) : "", c[F.rto] >= 0 ? "retries: " + s(c[F.rto]) : ""];
    info.forEach(function (t) { if (t) box.appendChild(el("p", "", t)); });
    var n = p.length / 7, L = 170, R = 650, top = 44, step = 28, H = top + step * (n + 1);
    var g = svg("svg", {width: 860, height: H, viewBox: "0 0 860 " + H});
    var defs = svg("defs", {});
    [["ab", "#06c"], ["ar", "#c00"], ["ag", "#999"]].forEach(function (m) {
      var mk = svg("marker", {id: m[0], markerWidth: 10, markerHeight: 7, refX: 10, refY: 3.5, orient: "auto"});
      mk.appendChild(svg("polygon", {points: "0 0, 10 3.5, 0 7", fill: m[1]}));
      defs.appendChild(mk);
    });
    g.appendChild(defs);
    g.appendChild(svg("text", {x: L, y: 16, "text-anchor": "middle"}, "client " + hp(s(c[F.cli]), c[F.cport])));
    g.appendChild(svg("text", {x: R, y: 16, "text-anchor": "middle"}, "server " + hp(s(c[F.srv]), c[F.sport])));
    g.appendChild(svg("line", {x1: L, y1: 24, x2: L, y2: H, stroke: "#333"}));
    g.appendChild(svg("line", {x1: R, y1: 24, x2: R, y2: H, stroke: "#333"}));
    for (var k = 0; k < n; k++) {
      var o = k * 7, dir = p[o + 1], toSrv = (dir & 1) === 0, y = top + step * k;
      var icmp = p[o + 6] >= 0, color = icmp || /R/.test(s(p[o + 2])) ? "#c00" : (dir & 6) ? "#999" : "#06c";
      var label = icmp ? "ICMP " + s(p[o + 6]) : s(p[o + 2]) + " seq=" + p[o + 4] + (p[o + 5] >= 0 ? " ack=" + p[o + 5] : "") + (p[o + 3] > 0 ? " len=" + p[o + 3] : "");
      if (dir & 2) label += " [dup]";
      if (dir & 4) label += " [bad csum]";
      g.appendChild(svg("text", {x: 4, y: y + 14}, "+" + (p[o] / 1e6).toFixed(6)));
      g.appendChild(svg("line", {x1: toSrv ? L : R, y1: y, x2: toSrv ? R : L, y2: y + step - 8, stroke: color,
        "marker-end": "url(#" + (color === "#c00" ? "ar" : color === "#999" ? "ag" : "ab") + ")"}));
      g.appendChild(svg("text", {x: (L + R) / 2, y: y + 10, "text-anchor": "middle", fill: color}, label));
    }
    box.appendChild(g);
    if (c[F.npk] > n) box.appendChild(el("p", "", (c[F.npk] - n) + " more packets not shown."));
    if (!n) box.appendChild(el("p", "", "No packets recorded for this connection."));
    document.body.setAttribute("data-ladder", String(c[F.id]));
  }

  applyFilter();
  var pre = D.select;
  if (pre > 0) for (i = 0; i < C.length; i++) if (C[i][F.id] === pre) { showLadder(i); break; }
  document.body.setAttribute("data-rendered", "1");
})();
