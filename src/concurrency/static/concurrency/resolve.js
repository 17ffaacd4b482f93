"use strict";
// The conflict resolution page: highlight, in each conflicting row, the value
// that will be saved ("Keep mine" or "Take theirs"). A static file, so the
// page works under a Content-Security-Policy without 'unsafe-inline'.
{
    const SIDES = ["mine", "theirs"];

    function highlight(row) {
        const chosen = row.querySelector("input[type=radio]:checked");
        if (!chosen) {
            return;
        }
        for (const side of SIDES) {
            const cell = row.querySelector("td.concurrency-" + side);
            if (cell) {
                cell.classList.toggle("concurrency-taken", chosen.value === side);
            }
        }
    }

    function init() {
        const form = document.getElementById("concurrency-resolve-form");
        if (!form) {
            return;
        }
        // The browser may restore a choice made before going back to the page.
        form.querySelectorAll("tr.concurrency-conflict").forEach(highlight);
        form.addEventListener("change", function(event) {
            const row = event.target.closest("tr.concurrency-conflict");
            if (row) {
                highlight(row);
            }
        });
    }

    if (document.readyState === "loading") {
        document.addEventListener("DOMContentLoaded", init);
    } else {
        init();
    }
}
