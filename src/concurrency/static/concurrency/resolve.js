"use strict";
// The conflict resolution page: highlight the values that will be saved when
// "Keep mine" or "Take theirs" is chosen. The rows a choice decides carry its
// name in data-choice (a field, or every field of an inline row added or
// deleted). A static file, so the page works under a Content-Security-Policy
// without 'unsafe-inline'.
{
    const SIDES = ["mine", "theirs"];

    function highlight(form, radio) {
        const chosen = form.querySelector(
            "input[type=radio][name='" + CSS.escape(radio.name) + "']:checked"
        );
        if (!chosen) {
            return;
        }
        form.querySelectorAll("tr[data-choice]").forEach(function(row) {
            if (row.dataset.choice !== radio.name) {
                return;
            }
            row.classList.remove("concurrency-missing");
            for (const side of SIDES) {
                const cell = row.querySelector("td.concurrency-" + side);
                if (cell) {
                    cell.classList.toggle("concurrency-taken", chosen.value === side);
                }
            }
        });
    }

    function init() {
        const form = document.getElementById("concurrency-resolve-form");
        if (!form) {
            return;
        }
        // The browser may restore a choice made before going back to the page.
        form.querySelectorAll("input[type=radio]:checked").forEach(function(radio) {
            highlight(form, radio);
        });
        form.addEventListener("change", function(event) {
            if (event.target.matches("input[type=radio]")) {
                highlight(form, event.target);
            }
        });
    }

    if (document.readyState === "loading") {
        document.addEventListener("DOMContentLoaded", init);
    } else {
        init();
    }
}
