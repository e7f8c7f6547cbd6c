// Parse Mermaid text (stdin) with Mermaid's own parser, run on jsdom, and print as JSON what
// it read: each node's id, label and classes, each edge's ends, label and stroke.
import { JSDOM } from "jsdom";
const dom = new JSDOM("<!doctype html><html><body></body></html>");
globalThis.window = dom.window;
globalThis.document = dom.window.document;
const { default: mermaid } = await import("mermaid");
mermaid.initialize({ startOnLoad: false });
let text = "";
for await (const chunk of process.stdin) text += chunk;
try {
  const diagram = await mermaid.mermaidAPI.getDiagramFromText(text);
  const db = diagram.db;
  const vertices = db.getVertices();
  const nodes = [...(vertices instanceof Map ? vertices.values() : Object.values(vertices))].map(
    (v) => ({ id: v.id, label: v.text, classes: v.classes })
  );
  const edges = db.getEdges().map((e) => ({ from: e.start, to: e.end, label: e.text, stroke: e.stroke }));
  console.log(JSON.stringify({ ok: true, type: diagram.type, nodes, edges }));
} catch (e) {
  console.log(JSON.stringify({ ok: false, error: String(e.message || e) }));
  process.exitCode = 1;
}
