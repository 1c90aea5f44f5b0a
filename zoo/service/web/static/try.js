// "Try it": post the chosen image's bytes to /try/SHA256 and show the drawing and summary the server returns.
"use strict";
const form = document.getElementById("try");
if (form) {
  const status = document.getElementById("status");
  const shown = document.querySelector(".drawn");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    delete form.dataset.done;
    const upload = document.getElementById("upload").files[0];
    const sample = form.querySelector("input[name=sample]:checked");
    let image = upload;
    if (!image && sample) image = await (await fetch(sample.value)).blob();
    if (!image) { status.textContent = "choose a sample or upload an image"; return; }
    if (image.size > Number(form.dataset.maxBytes)) {
      status.textContent = `the image is ${image.size} bytes; this server accepts at most ${form.dataset.maxBytes}`;
      return;
    }
    status.className = "";
    status.textContent = "predicting…";
    const response = await fetch(`/try/${document.getElementById("export").value}`, {
      method: "POST", body: image, headers: {"Content-Type": "application/octet-stream"},
    });
    const answer = await response.json();
    if (!response.ok) { shown.hidden = true; status.textContent = answer.error; status.className = "error"; return; }
    status.textContent = `${answer.task} in ${answer.latency_ms} ms on ${answer.providers[0]}`;
    document.getElementById("summary").textContent = answer.summary;
    const drawn = document.getElementById("drawn");
    drawn.src = answer.png;
    drawn.alt = `the prediction drawn on the image: ${answer.summary}`;
    document.getElementById("result").textContent = JSON.stringify(answer.result, null, 1).slice(0, 4000);
    shown.hidden = false;
    form.dataset.done = "1";
  });
}
