// The model card: a collapsed part with data-src (the per-layer summary, built on the server; a long list of
// categories) is fetched when first opened, the .fragment of the page it names shown in it. The part then says
// how it ended in data-state: "loaded", or "failed" (the answer's own line shown, or why it did not come).
// Each block of code to copy gets a copy button.
"use strict";
for (const part of document.querySelectorAll("details[data-src]")) {
  part.addEventListener("toggle", async () => {
    if (!part.open || part.dataset.state) return;
    part.dataset.state = "loading";
    const body = part.querySelector(".loaded-body");
    body.textContent = part.id === "layers" ? "building the model on the server…" : "loading…";
    try {
      const response = await fetch(part.dataset.src);
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      const shown = page.querySelector(".fragment") || page.querySelector("main");
      body.replaceChildren(...(shown ? shown.childNodes : []));
      part.dataset.state = response.ok ? "loaded" : "failed";
    } catch (error) {
      body.textContent = `failed: ${error}`;
      part.dataset.state = "failed";
    }
  });
}
for (const block of document.querySelectorAll("pre.usage")) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "copy";
  button.textContent = "copy";
  button.setAttribute("aria-label", `copy: ${block.dataset.label}`);
  button.addEventListener("click", async () => {
    await navigator.clipboard.writeText(block.textContent);
    button.textContent = "copied";
  });
  block.before(button);
}
