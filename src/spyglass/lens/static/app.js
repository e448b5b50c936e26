/* spyglass atlas viewer: plain JavaScript, no framework, no network beyond this site's own files.
 *
 * Data arrive as <script> files (data/index.js, data/class/<id>.js) that call lensReceive(kind, id, doc),
 * so the same page works from file:// (where a browser refuses to fetch data) and served. A page loads only the
 * documents it shows: a class page its own script, the index page the index. The DOM is built with
 * textContent and attributes only, never from HTML strings, so no document text can inject markup.
 */
"use strict";

const store = { index: null, classes: new Map(), waiting: new Map() };
const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
  "#9c755f", "#bab0ac", "#1f77b4", "#d62728"];

function colour(concept) {
  return concept < PALETTE.length ? PALETTE[concept] : `hsl(${(concept * 137.5) % 360}, 55%, 50%)`;
}

function lensReceive(kind, key, doc) {
  if (kind === "index") store.index = doc;
  else store.classes.set(key, doc);
  const name = `${kind}:${key}`;
  const pending = store.waiting.get(name);
  if (pending) { store.waiting.delete(name); pending.resolve(doc); }
}
window.lensReceive = lensReceive;

function load(kind, key) {
  const have = kind === "index" ? store.index : store.classes.get(key);
  if (have) return Promise.resolve(have);
  const name = `${kind}:${key}`;
  if (store.waiting.has(name)) return store.waiting.get(name).promise;
  let entry;
  const promise = new Promise((resolve, reject) => { entry = { resolve, reject }; });
  entry.promise = promise;
  store.waiting.set(name, entry);
  const script = document.createElement("script");
  script.src = kind === "index" ? "data/index.js" : `data/class/${key}.js`;
  script.onerror = () => { store.waiting.delete(name); entry.reject(new Error(`${script.src} is missing`)); };
  script.onload = () => script.remove();
  document.head.appendChild(script);
  return promise;
}

/* h("a", {href: "#"}, "text", child): an element with attributes and children (strings become text). */
function h(tag, attrs, ...children) {
  const svg = ["svg", "circle", "line", "rect", "text", "g", "title"].includes(tag);
  const el = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "style") Object.assign(el.style, v); // the CSSOM, which a strict CSP allows
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const pct = (x) => `${(100 * x).toFixed(1)} %`;
const classLink = (id, ...children) => h("a", { href: `#class/${Number(id)}` }, ...children);
const conceptLink = (id, k, text) => h("a", { href: `#class/${Number(id)}/concept/${Number(k)}` }, text);
const imageLink = (id, i, ...children) => h("a", { href: `#class/${Number(id)}/image/${Number(i)}` }, ...children);
const img = (src, alt, cls) => h("img", { src, alt, loading: "lazy", decoding: "async", class: cls });
const section = (title, ...children) => h("section", { class: "card-section" }, h("h2", {}, title), ...children);

function showProvenance(p) {
  const foot = document.getElementById("provenance");
  foot.replaceChildren();
  if (!p) return;
  const settings = Object.entries(p.settings || {}).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(", ");
  const sha = p.weights_sha256 ? ` (sha256 ${String(p.weights_sha256).slice(0, 12)}…)` : "";
  foot.append(
    h("span", {}, h("b", {}, "model "), `${p.model}${sha}`),
    h("span", {}, h("b", {}, "layer "), p.layer),
    h("span", {}, h("b", {}, "data "), p.data),
    h("span", {}, h("b", {}, "built "), p.created),
    h("span", {}, h("b", {}, "spyglass "), p.spyglass_version),
    h("span", { class: "settings" }, h("b", {}, "settings "), settings || "—"));
}

function render(...nodes) {
  const main = document.getElementById("main");
  main.replaceChildren(...nodes);
  hideTip();
  performance.mark("lens:rendered"); // what benchmarks/lens_site.py times
}

/* ---------- the class index ---------- */

function indexPage(doc, query) {
  const classes = doc.classes;
  const counts = { done: 0, failed: 0, pending: 0 };
  const byImportant = new Map();
  for (const c of classes) {
    counts[c.status] = (counts[c.status] || 0) + 1;
    if (c.status === "done") byImportant.set(c.n_important, (byImportant.get(c.n_important) || 0) + 1);
  }
  const search = h("input", { id: "search", type: "search", value: query, autocomplete: "off",
    placeholder: "Search by name, WordNet name or class id", "aria-label": "search classes" });
  const filter = h("select", { id: "important", "aria-label": "number of important concepts" },
    h("option", { value: "" }, `important concepts: any`),
    [...byImportant.keys()].sort((a, b) => a - b).map((n) =>
      h("option", { value: n }, `${n} important (${byImportant.get(n)} classes)`)));
  const summary = h("p", { class: "note", id: "summary" });
  const rows = classes.map((c) => {
    const li = h("li", { class: `status-${c.status}`, "data-id": c.id },
      classLink(c.id, h("span", { class: "id" }, c.id), h("b", {}, c.short), h("span", { class: "name" }, c.name),
        c.status === "done" ? h("span", { class: "n" }, `${c.n_important} important · ${c.n_images} images`)
          : h("span", { class: `badge ${c.status}`, title: c.error || "" }, c.status)));
    li.searchText = `${c.short}\n${c.name}`.toLowerCase();
    li.entry = c;
    return li;
  });
  const list = h("ul", { class: "classes", id: "class-list" }, rows);
  function apply() {
    const q = search.value.trim().toLowerCase();
    const n = filter.value === "" ? null : Number(filter.value);
    let shown = 0;
    for (const li of rows) {
      const c = li.entry;
      const hit = (!q || String(c.id) === q || li.searchText.includes(q))
        && (n === null || (c.status === "done" && c.n_important === n));
      li.hidden = !hit;
      if (hit) shown += 1;
    }
    summary.textContent = `${shown} of ${classes.length} classes shown · ${counts.done} done · ${counts.failed} failed · `
      + `${counts.pending} pending`;
    const hash = q ? `#search/${encodeURIComponent(search.value.trim())}` : "#";
    if (location.hash !== hash && !(hash === "#" && location.hash === "")) history.replaceState(null, "", hash);
  }
  search.addEventListener("input", apply);
  filter.addEventListener("change", apply);
  render(h("h1", {}, "Classes"), h("div", { class: "controls" }, search, filter), summary, list);
  apply();
  showProvenance(doc.provenance);
  search.focus();
}

/* ---------- charts ---------- */

function importanceChart(doc) {
  const rows = doc.concepts.map((c) => ({ label: `concept ${c.index}`, value: c.share, concept: c.index,
    important: c.important }));
  rows.push({ label: "residual", value: doc.residual_share, concept: null });
  const top = Math.max(1e-9, ...rows.map((r) => Math.abs(r.value)));
  return h("div", { class: "bars", id: "importance" }, rows.map((r) => {
    const bar = h("span", { class: "bar" + (r.value < 0 ? " negative" : ""),
      style: { width: `${(100 * Math.abs(r.value) / top).toFixed(1)}%`, background: r.concept === null ? "#999" : colour(r.concept) } });
    const label = r.concept === null ? h("span", { class: "label" }, r.label)
      : h("span", { class: "label" }, conceptLink(doc.id, r.concept, r.label), r.important ? " ★" : "");
    return h("div", { class: "bar-row" }, label, h("span", { class: "track" }, bar), h("span", { class: "value" }, pct(r.value)));
  }));
}

function scale(values, lo, hi) {
  const min = Math.min(...values), max = Math.max(...values);
  const span = max - min || 1;
  return (v) => lo + ((v - min) / span) * (hi - lo);
}

const tip = () => document.getElementById("tip");
function showTip(event, src, text) {
  const t = tip();
  const image = t.querySelector("img");
  if (image.getAttribute("src") !== src) image.setAttribute("src", src);
  t.querySelector("span").textContent = text;
  t.hidden = false;
  const x = Math.min(event.clientX + 14, window.innerWidth - 130), y = Math.min(event.clientY + 14, window.innerHeight - 140);
  t.style.left = `${Math.max(0, x)}px`;
  t.style.top = `${Math.max(0, y)}px`;
}
function hideTip() { const t = tip(); if (t) t.hidden = true; }

/* The strategic cluster graph: one point per image at its 2-D position, coloured by its dominant concept. */
function clusterGraph(doc, highlight) {
  const W = 480, H = 320, pad = 14;
  const xs = scale(doc.images.map((i) => i.point[0]), pad, W - pad);
  const ys = scale(doc.images.map((i) => i.point[1]), H - pad, pad);
  const points = doc.images.map((im) => {
    const on = im.index === highlight;
    return h("circle", { cx: xs(im.point[0]).toFixed(1), cy: ys(im.point[1]).toFixed(1), r: on ? 8 : 4.5,
      fill: colour(im.dominant), class: on ? "point current" : "point", "data-image": im.index,
      onmouseenter: (e) => showTip(e, im.thumb, `image ${im.index} · concept ${im.dominant}`),
      onmousemove: (e) => showTip(e, im.thumb, `image ${im.index} · concept ${im.dominant}`),
      onmouseleave: hideTip,
      onclick: () => { location.hash = `#class/${doc.id}/image/${im.index}`; },
      // Keyboard too: Tab reaches each point, focus shows its thumbnail, Enter opens the image.
      tabindex: 0, role: "link", "aria-label": `image ${im.index}, dominant concept ${im.dominant}`,
      onfocus: (e) => { const r = e.target.getBoundingClientRect(); showTip({ clientX: r.right, clientY: r.bottom }, im.thumb, `image ${im.index} · concept ${im.dominant}`); },
      onblur: hideTip,
      onkeydown: (e) => { if (e.key === "Enter") location.hash = `#class/${doc.id}/image/${im.index}`; } });
  });
  if (highlight !== undefined) points.sort((a, b) => (a.classList.contains("current") ? 1 : 0) - (b.classList.contains("current") ? 1 : 0));
  const used = [...new Set(doc.images.map((i) => i.dominant))].sort((a, b) => a - b);
  return h("div", { class: "graph" },
    h("svg", { viewBox: `0 0 ${W} ${H}`, id: "cluster-graph", role: "img", "aria-label": "strategic cluster graph" }, points),
    h("p", { class: "legend" }, "dominant concept: ", used.map((k) =>
      h("span", { class: "key" }, h("i", { style: { background: colour(k) } }), conceptLink(doc.id, k, `${k}`)))));
}

/* The concepts' 2-D similarity layout beside their cosine matrix. */
function similarityMap(doc) {
  const W = 300, H = 240, pad = 22;
  const cs = doc.concepts.filter((c) => Array.isArray(c.layout));
  const xs = scale(cs.map((c) => c.layout[0]), pad, W - pad), ys = scale(cs.map((c) => c.layout[1]), H - pad, pad);
  const layout = h("svg", { viewBox: `0 0 ${W} ${H}`, class: "similarity", role: "img", "aria-label": "concept similarity map" },
    cs.map((c) => h("g", {},
      h("circle", { cx: xs(c.layout[0]).toFixed(1), cy: ys(c.layout[1]).toFixed(1), r: 7, fill: colour(c.index),
        onclick: () => { location.hash = `#class/${doc.id}/concept/${c.index}`; } }, h("title", {}, `concept ${c.index}`)),
      h("text", { x: (xs(c.layout[0]) + 9).toFixed(1), y: (ys(c.layout[1]) + 4).toFixed(1) }, `${c.index}`))));
  const m = doc.similarity || [], n = m.length, cell = Math.max(8, Math.floor(220 / Math.max(1, n)));
  const matrix = h("svg", { viewBox: `0 0 ${n * cell + 20} ${n * cell + 20}`, class: "matrix", role: "img", "aria-label": "concept cosine matrix" },
    m.flatMap((row, i) => row.map((v, j) => h("rect", { x: 20 + j * cell, y: 20 + i * cell, width: cell, height: cell,
      fill: v >= 0 ? `rgba(78,121,167,${Math.min(1, v).toFixed(3)})` : `rgba(225,87,89,${Math.min(1, -v).toFixed(3)})` },
      h("title", {}, `concepts ${i} and ${j}: cosine ${v}`)))),
    m.map((_, i) => h("text", { x: 20 + i * cell + cell / 2, y: 14, "text-anchor": "middle" }, `${i}`)),
    m.map((_, i) => h("text", { x: 10, y: 20 + i * cell + cell / 2 + 4, "text-anchor": "middle" }, `${i}`)));
  return h("div", { class: "pair" }, layout, matrix);
}

/* ---------- a class, a concept, an image ---------- */

function statusPage(doc) {
  const what = doc.status === "failed" ? "Its build failed:" : "It is not built yet (pending).";
  render(h("h1", {}, `${doc.short} `, h("span", { class: "id" }, `class ${doc.id}`)), h("p", { class: "name" }, doc.name),
    h("p", { class: `badge ${doc.status}` }, doc.status), h("p", {}, what),
    doc.error ? h("pre", { class: "error" }, doc.error) : null, h("p", {}, h("a", { href: "#" }, "All classes")));
  showProvenance(doc.provenance);
}

function classHeader(doc, title) {
  const important = doc.concepts.filter((c) => c.important).length;
  return [h("h1", {}, title || doc.short, " ", h("span", { class: "id" }, `class ${doc.id}`)),
    h("p", { class: "name" }, doc.name),
    h("p", { class: "note" }, `${doc.n_images} images · mean logit ${doc.logit_mean} · ${doc.concepts.length} concepts, `
      + `${important} important (${doc.important_rule}) · residual ${pct(doc.residual_share)}`)];
}

function conceptPanel(doc, concept) {
  const c = doc.concepts.find((x) => x.index === concept);
  if (!c) return h("section", { class: "card-section", id: "concept-panel" }, h("p", {}, `No concept ${concept} in this class.`));
  return h("section", { class: "card-section panel", id: "concept-panel" },
    h("h2", {}, `Concept ${c.index} `, h("span", { class: "note" }, `${pct(c.share)} of the logit · top concept of ${pct(c.image_share)} of the images`)),
    h("div", { class: "panel-grid" },
      c.render ? img(c.render, `rendering of concept ${c.index}`, "render big") : h("p", { class: "note" }, "no rendering"),
      h("div", {},
        h("h3", {}, "Best crops"), h("div", { class: "crops", id: "crops" }, c.crops.map((src, i) => img(src, `crop ${i + 1}`, "crop"))),
        h("h3", {}, "Concept attribution maps"),
        c.maps.length ? h("div", { class: "crops", id: "maps" }, c.maps.map((m) => imageLink(doc.id, m.image, img(m.file, `map on image ${m.image}`, "map"))))
          : h("p", { class: "note" }, "none recorded"))),
    h("div", { class: "pair" },
      h("div", {}, h("h3", {}, "Aligned classes (top 5)"), h("ol", { class: "links" },
        c.top_classes.map((t) => h("li", {}, classLink(t.id, `${t.short} (${t.id})`), ` cosine ${t.cosine}`)))),
      h("div", {}, h("h3", {}, "Similar concepts in other classes"), c.similar.length ? h("ol", { class: "links" },
        c.similar.map((s) => h("li", {}, conceptLink(s.class, s.concept, `${s.short} (${s.class}) · concept ${s.concept}`), ` cosine ${s.cosine}`)))
        : h("p", { class: "note" }, "none above the threshold"))));
}

function classPage(doc, concept) {
  const cards = h("div", { class: "cards", id: "concepts" }, doc.concepts.map((c) =>
    h("a", { href: `#class/${doc.id}/concept/${c.index}`, class: "concept" + (c.index === concept ? " open" : ""),
      style: { borderColor: colour(c.index) }, "data-concept": c.index },
      c.render ? img(c.render, `concept ${c.index}`, "render") : h("span", { class: "render none" }, "no rendering"),
      h("b", {}, `concept ${c.index}`, c.important ? " ★" : ""),
      h("span", { class: "note" }, `${pct(c.share)} of logit · ${pct(c.image_share)} of images`))));
  const panel = concept === undefined ? null : conceptPanel(doc, concept);
  render(...classHeader(doc),
    section("Importance (share of the logit)", importanceChart(doc)),
    section("Concepts", cards, panel),
    section("Strategic cluster graph", clusterGraph(doc)),
    section("Concept similarity", similarityMap(doc)));
  showProvenance(doc.provenance);
  if (panel) panel.scrollIntoView({ block: "start" });
}

function imagePage(doc, index) {
  const im = doc.images.find((x) => x.index === index);
  if (!im) return render(h("h1", {}, `No image ${index} in class ${doc.id}`), h("p", {}, classLink(doc.id, doc.short)));
  const order = doc.images.map((x) => x.index), at = order.indexOf(index);
  const shares = im.shares.map((v, k) => ({ k, v })).sort((a, b) => b.v - a.v);
  const top = Math.max(1e-9, ...shares.map((s) => Math.abs(s.v)));
  render(...classHeader(doc, `${doc.short}: image ${index}`),
    h("p", {}, classLink(doc.id, `← ${doc.short}`), " · ",
      at > 0 ? imageLink(doc.id, order[at - 1], "previous") : "previous", " · ",
      at < order.length - 1 ? imageLink(doc.id, order[at + 1], "next") : "next"),
    h("div", { class: "pair" },
      h("img", { src: im.file, alt: `image ${index}`, class: "photo", id: "photo" }),
      h("div", {}, h("h2", {}, "Concept decomposition"), h("div", { class: "bars", id: "shares" }, shares.map((s) =>
        h("div", { class: "bar-row" + (s.k === im.dominant ? " dominant" : "") },
          h("span", { class: "label" }, conceptLink(doc.id, s.k, `concept ${s.k}`)),
          h("span", { class: "track" }, h("span", { class: "bar" + (s.v < 0 ? " negative" : ""),
            style: { width: `${(100 * Math.abs(s.v) / top).toFixed(1)}%`, background: colour(s.k) } })),
          h("span", { class: "value" }, pct(s.v))))))),
    section("Concept maps on this image", im.maps.length ? h("div", { class: "crops", id: "image-maps" }, im.maps.map((m) =>
      h("figure", {}, img(m.file, `concept ${m.concept} on image ${index}`, "map"), h("figcaption", {}, conceptLink(doc.id, m.concept, `concept ${m.concept}`)))))
      : h("p", { class: "note" }, "no concept map recorded on this image")),
    section("Its point in the strategic cluster graph", clusterGraph(doc, index)));
  showProvenance(doc.provenance);
  window.scrollTo(0, 0);
}

/* ---------- routing ---------- */

function failed(error) {
  render(h("h1", {}, "Not found"), h("p", {}, String(error.message || error)), h("p", {}, h("a", { href: "#" }, "All classes")));
}

function route() {
  let hash = location.hash.replace(/^#\/?/, "");
  try { hash = decodeURIComponent(hash); } catch (error) { /* a malformed %-escape: taken as typed */ }
  const m = hash.match(/^class\/(\d+)(?:\/(concept|image)\/(\d+))?$/);
  if (m) {
    const id = Number(m[1]);
    load("class", id).then((doc) => {
      if (doc.status && doc.status !== "done") return statusPage(doc);
      if (m[2] === "image") return imagePage(doc, Number(m[3]));
      classPage(doc, m[2] === "concept" ? Number(m[3]) : undefined);
      if (m[2] !== "concept") window.scrollTo(0, 0);
    }).catch(failed);
    return;
  }
  const query = hash.startsWith("search/") ? hash.slice(7) : "";
  load("index", null).then((doc) => indexPage(doc, query)).catch(failed);
}

window.addEventListener("hashchange", route);
route();
