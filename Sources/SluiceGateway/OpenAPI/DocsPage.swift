import Foundation

/// `GET /docs`: one self-contained HTML page (no CDN, no fetch) with the OpenAPI
/// document inlined and a small renderer: operations by tag, their parameters, request
/// and response schemas (references resolved, expandable), examples, and the schemas.
enum DocsPage {
    static let html: String = {
        // Inlined in a <script> element: "</" must not close it.
        let spec = OpenAPIDocument.json.replacingOccurrences(of: "</", with: "<\\/")
        return head + "<script type=\"application/json\" id=\"spec\">" + spec + "</script>\n" + body
    }()

    private static let head = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sluice gateway API</title>
<style>
  :root { --fg: #1d2430; --muted: #5b6675; --line: #dde3ea; --bg: #f7f9fb; --code: #eef2f6; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: #fff; }
  header { padding: 24px 32px; border-bottom: 1px solid var(--line); background: var(--bg); }
  header h1 { margin: 0 0 6px; font-size: 24px; }
  main { display: grid; grid-template-columns: 240px 1fr; gap: 0; }
  nav { padding: 16px 20px; border-right: 1px solid var(--line); position: sticky; top: 0; align-self: start; max-height: 100vh; overflow: auto; font-size: 14px; }
  nav a { display: block; color: var(--fg); text-decoration: none; padding: 2px 0; }
  nav a:hover { text-decoration: underline; }
  nav .tag { margin-top: 12px; font-weight: 600; }
  #content { padding: 8px 32px 48px; min-width: 0; }
  h2 { margin: 28px 0 8px; font-size: 20px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
  details.op { border: 1px solid var(--line); border-radius: 6px; margin: 10px 0; background: #fff; }
  details.op > summary { cursor: pointer; padding: 8px 12px; list-style: none; display: flex; gap: 10px; align-items: baseline; }
  details.op[open] > summary { border-bottom: 1px solid var(--line); background: var(--bg); }
  .method { font: 600 12px ui-monospace, monospace; padding: 2px 8px; border-radius: 4px; color: #fff; min-width: 64px; text-align: center; }
  .get { background: #2f7d4f; } .post { background: #2b64b0; } .delete { background: #b03a2e; } .put, .patch { background: #a06a12; }
  .path { font: 600 14px ui-monospace, monospace; }
  .summary { color: var(--muted); }
  .body { padding: 4px 16px 12px; }
  h4 { margin: 14px 0 6px; font-size: 14px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); }
  code, pre { font: 13px ui-monospace, SFMono-Regular, Menlo, monospace; background: var(--code); border-radius: 4px; }
  code { padding: 1px 4px; }
  pre { padding: 10px; overflow: auto; }
  table { border-collapse: collapse; width: 100%; font-size: 14px; }
  td, th { border-bottom: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
  .schema { font: 13px ui-monospace, monospace; margin: 4px 0; }
  .schema details { margin-left: 16px; }
  .schema summary { cursor: pointer; }
  .prop { margin-left: 16px; }
  .type { color: #7a3e9d; }
  .req { color: #b03a2e; font-size: 11px; }
  .desc { font: 13px system-ui, sans-serif; color: var(--muted); }
  .status { font: 600 13px ui-monospace, monospace; }
  .ct { font-size: 12px; color: var(--muted); }
  @media (max-width: 800px) { main { grid-template-columns: 1fr; } nav { position: static; border-right: 0; } }
</style>
</head>
<body>
<header><h1 id="title">Sluice gateway API</h1><div id="intro" class="desc"></div></header>
<main><nav id="nav"></nav><div id="content"></div></main>

"""#

    private static let body = #"""
<script>
(function () {
  const spec = JSON.parse(document.getElementById("spec").textContent);
  const el = (tag, attrs, ...kids) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) { if (k === "class") e.className = v; else e.setAttribute(k, v); }
    for (const k of kids.flat()) { if (k != null) e.append(k instanceof Node ? k : document.createTextNode(String(k))); }
    return e;
  };
  // Backticks become <code>; everything else is text.
  const md = (text) => {
    const span = el("span", { class: "desc" });
    String(text || "").split("`").forEach((part, i) => span.append(i % 2 ? el("code", {}, part) : document.createTextNode(part)));
    return span;
  };
  const resolve = (s) => {
    let seen = 0;
    while (s && s.$ref && seen++ < 20) s = s.$ref.split("/").slice(1).reduce((o, k) => o && o[k], spec);
    return s || {};
  };
  const refName = (s) => (s && s.$ref ? s.$ref.split("/").pop() : null);
  const typeOf = (s0) => {
    const s = resolve(s0);
    if (s.const !== undefined) return JSON.stringify(s.const);
    if (s.enum) return s.enum.map((v) => JSON.stringify(v)).join(" | ");
    if (s.oneOf) return s.oneOf.map(typeOf).join(" | ");
    let t = Array.isArray(s.type) ? s.type.join(" | ") : s.type || (s.properties ? "object" : "any");
    if (t === "array" && s.items) t = typeOf(s.items) + "[]";
    return (refName(s0) ? refName(s0) + " " : "") + t;
  };
  // A schema as an expandable tree; depth-limited so recursive references stop.
  const schemaTree = (s0, depth) => {
    const s = resolve(s0);
    const box = el("div", { class: "schema" });
    const props = s.properties || (s.items && resolve(s.items).properties);
    const required = new Set(s.required || (s.items && resolve(s.items).required) || []);
    if (s.description) box.append(md(s.description));
    if (!props || depth > 5) return box;
    for (const [name, p] of Object.entries(props)) {
      const line = el("span", {}, el("b", {}, name), ": ", el("span", { class: "type" }, typeOf(p)),
        required.has(name) ? el("span", { class: "req" }, " required") : null);
      const ps = resolve(p);
      const nested = ps.properties || (ps.items && resolve(ps.items).properties) || (ps.oneOf && ps.oneOf.some((o) => resolve(o).properties));
      if (nested) {
        const inner = ps.oneOf ? resolve(ps.oneOf.find((o) => resolve(o).properties)) : ps;
        box.append(el("details", {}, el("summary", {}, line), schemaTree(inner, depth + 1)));
      } else {
        box.append(el("div", { class: "prop" }, line, ps.description ? el("div", {}, md(ps.description)) : null));
      }
    }
    return box;
  };
  const content = (c) => Object.entries(c || {}).map(([type, media]) => el("div", {},
    el("div", { class: "ct" }, type), media.schema ? el("div", {}, el("span", { class: "type" }, typeOf(media.schema))) : null,
    media.schema ? schemaTree(media.schema, 0) : null,
    media.example !== undefined ? el("pre", {}, JSON.stringify(media.example, null, 2)) : null));

  document.getElementById("title").textContent = spec.info.title + " " + spec.info.version;
  document.getElementById("intro").append(md(spec.info.description));
  const nav = document.getElementById("nav"), main = document.getElementById("content");
  const tags = (spec.tags || []).map((t) => t.name);
  const ops = [];
  for (const [path, item] of Object.entries(spec.paths)) {
    for (const m of ["get", "post", "put", "patch", "delete"]) {
      if (!item[m]) continue;
      const op = item[m];
      ops.push({ path, method: m, op, params: (item.parameters || []).concat(op.parameters || []) });
      for (const t of op.tags || []) if (!tags.includes(t)) tags.push(t);
    }
  }
  for (const tag of tags) {
    const tagInfo = (spec.tags || []).find((t) => t.name === tag) || {};
    nav.append(el("div", { class: "tag" }, tag));
    main.append(el("h2", { id: "tag-" + tag }, tag), tagInfo.description ? md(tagInfo.description) : null);
    for (const { path, method, op, params } of ops.filter((o) => (o.op.tags || [])[0] === tag)) {
      const id = op.operationId || method + path;
      nav.append(el("a", { href: "#" + id }, method.toUpperCase() + " " + path));
      const body = el("div", { class: "body" }, op.description ? el("p", {}, md(op.description)) : null);
      if (params.length) {
        body.append(el("h4", {}, "Parameters"), el("table", {},
          el("tr", {}, el("th", {}, "name"), el("th", {}, "in"), el("th", {}, "type"), el("th", {}, "")),
          params.map((p) => el("tr", {}, el("td", {}, el("code", {}, p.name), p.required ? el("span", { class: "req" }, " required") : null),
            el("td", {}, p.in), el("td", { class: "type" }, typeOf(p.schema)), el("td", {}, md(p.description))))));
      }
      if (op.requestBody) body.append(el("h4", {}, "Request body"), content(op.requestBody.content));
      body.append(el("h4", {}, "Responses"));
      for (const [status, r0] of Object.entries(op.responses || {})) {
        const r = resolve(r0);
        body.append(el("div", {}, el("span", { class: "status" }, status), " ", md(r.description)), el("div", { class: "prop" }, content(r.content)));
      }
      main.append(el("details", { class: "op", id },
        el("summary", {}, el("span", { class: "method " + method }, method.toUpperCase()), el("span", { class: "path" }, path),
          el("span", { class: "summary" }, op.summary || "")), body));
    }
  }
  nav.append(el("div", { class: "tag" }, "Schemas"));
  main.append(el("h2", { id: "schemas" }, "Schemas"));
  for (const [name, s] of Object.entries((spec.components || {}).schemas || {})) {
    nav.append(el("a", { href: "#schema-" + name }, name));
    main.append(el("details", { class: "op", id: "schema-" + name }, el("summary", {}, el("span", { class: "path" }, name),
      el("span", { class: "summary" }, typeOf(s))), el("div", { class: "body" }, schemaTree(s, 0))));
  }
  if (location.hash) { const t = document.getElementById(location.hash.slice(1)); if (t && t.tagName === "DETAILS") t.open = true; }
})();
</script>
</body>
</html>

"""#
}
