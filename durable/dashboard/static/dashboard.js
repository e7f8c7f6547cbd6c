// The dashboard's own script (no inline scripts: the pages' CSP forbids them).
// * htmx requests carry the page's CSRF token;
// * a polled part sends the version it shows (v), and the server answers 204 when that
//   is still current, so nothing is swapped;
// * graphs (<pre class="mermaid">) are drawn with the vendored Mermaid, again after a swap;
// * a text area with data-fill-from starts with the text of the element it names (the
//   execution's context is in the page once: the fork form's copy is made here).
(function () {
  "use strict";
  document.addEventListener("htmx:configRequest", function (event) {
    event.detail.headers["X-CSRF-Token"] = document.body.dataset.csrf;
    var elt = event.detail.elt;
    if (elt && elt.hasAttribute("data-versioned") && elt.dataset.version) {
      event.detail.parameters["v"] = elt.dataset.version;
    }
  });
  document.addEventListener("htmx:afterRequest", function (event) {
    var elt = event.detail.elt;
    var xhr = event.detail.xhr;
    if (elt && elt.hasAttribute("data-versioned") && xhr && xhr.status === 200) {
      elt.dataset.version = xhr.getResponseHeader("X-Version") || "";
    }
  });
  function draw() {
    if (!window.mermaid) return;
    var pending = document.querySelectorAll("pre.mermaid:not([data-processed])");
    if (pending.length) {
      window.mermaid.run({ nodes: pending }).catch(function (err) {
        pending.forEach(function (node) { node.setAttribute("data-failed", String(err)); });
      });
    }
  }
  function fill() {
    document.querySelectorAll("textarea[data-fill-from]").forEach(function (area) {
      var source = document.getElementById(area.dataset.fillFrom);
      if (source && !area.value) area.value = source.textContent;
    });
  }
  document.addEventListener("DOMContentLoaded", fill);
  window.addEventListener("load", function () {
    if (window.mermaid) {
      window.mermaid.initialize({ startOnLoad: false, securityLevel: "strict" });
    }
    draw();
  });
  document.addEventListener("htmx:afterSwap", draw);
})();
