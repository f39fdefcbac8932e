// Building the page from API data safely: every value becomes a text node or an attribute
// set with setAttribute, never HTML (the API's data is not trusted).

const SVG = "http://www.w3.org/2000/svg";

function build(node, attrs, children) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) {
      continue;
    }
    if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2), value);
    } else {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) {
      continue;
    }
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// An HTML element: el("a", {href: "#/x"}, "text", otherNode).
export function el(tag, attrs = {}, ...children) {
  return build(document.createElement(tag), attrs, children);
}

// An SVG element, likewise.
export function svg(tag, attrs = {}, ...children) {
  return build(document.createElementNS(SVG, tag), attrs, children);
}

export function clear(node) {
  node.replaceChildren();
  return node;
}

// A time in Unix seconds as local date and time.
export function when(seconds) {
  if (typeof seconds !== "number") {
    return "";
  }
  return new Date(seconds * 1000).toLocaleString();
}

export function number(value, digits = 0) {
  if (typeof value !== "number" || !Number.isFinite(value)) {
    return value === null || value === undefined ? "" : String(value);
  }
  return value.toLocaleString(undefined, { maximumFractionDigits: digits });
}

// A status badge; its status is also in data-status (the tests and the CSS read it).
export function badge(status) {
  return el("span", { class: "badge", "data-status": status }, status);
}

// A link to a route of the console (#/...); path parts are URI-encoded.
export function link(text, ...parts) {
  return el("a", { href: "#/" + parts.map(encodeURIComponent).join("/") }, text);
}
