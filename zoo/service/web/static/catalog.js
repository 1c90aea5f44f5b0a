// The catalog and compare pages: a changed menu applies the filters at once; marks when the table is there.
"use strict";
for (const select of document.querySelectorAll("#filters select, #axes select")) {
  select.addEventListener("change", () => select.form.submit());
}
if (document.querySelector("#catalog tbody, #plot")) {
  performance.mark("zoo-table-rendered");
}
