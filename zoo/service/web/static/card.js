// The model card: the per-layer summary is built on the server when it is first opened.
"use strict";
const layers = document.getElementById("layers");
if (layers) {
  layers.addEventListener("toggle", async () => {
    if (!layers.open || layers.dataset.loaded) return;
    layers.dataset.loaded = "1";
    const body = layers.querySelector(".layers-body");
    body.textContent = "building the model on the server…";
    const response = await fetch(layers.dataset.src);
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    body.replaceChildren(...(page.querySelector(".layers-fragment") || page.querySelector("main")).childNodes);
  });
}
