/*
 * "Changed since you opened this page": django-optimistic-concurrency.
 *
 * Configured by the data- attributes of its own <script> tag (see
 * concurrency/live.py); no inline script, so a strict Content-Security-Policy
 * allows it. While the page is visible it sends a conditional GET every
 * data-interval milliseconds, and once more whenever the page becomes visible
 * or regains focus; a 304 means nothing changed. Anything else that carries a
 * message is shown once, in the admin's message style, and checking stops.
 */
"use strict";
(function (script) {
  if (!script || !window.fetch) {
    return;
  }
  const config = script.dataset;
  const every = Number(config.interval);
  if (!(every > 0)) {
    return;
  }
  let timer = null;
  let busy = false;
  let done = false;

  function stop() {
    if (timer !== null) {
      window.clearInterval(timer);
      timer = null;
    }
  }

  function start() {
    if (!done && timer === null && document.visibilityState === "visible") {
      timer = window.setInterval(check, every);
    }
  }

  function place(notice) {
    if (script.parentNode && script.parentNode !== document.head) {
      script.parentNode.insertBefore(notice, script);
      return;
    }
    const content = document.getElementById("content");
    if (content && content.parentNode) {
      content.parentNode.insertBefore(notice, content);
    } else {
      document.body.insertBefore(notice, document.body.firstChild);
    }
  }

  function show(data) {
    const list = document.createElement("ul");
    list.className = "messagelist concurrency-live-notice";
    list.setAttribute("role", "status");
    const item = document.createElement("li");
    item.className = data.deleted ? "error" : "warning";
    item.appendChild(document.createTextNode(String(data.message || config.label) + " "));
    if (!data.deleted && config.currentUrl) {
      const link = document.createElement("a");
      link.href = config.currentUrl;
      link.target = "_blank";
      link.rel = "noopener";
      link.className = "concurrency-live-open";
      link.textContent = config.openLabel;
      item.appendChild(link);
    }
    if (!data.deleted && config.resolveForm && document.getElementById(config.resolveForm)) {
      item.appendChild(document.createTextNode(" "));
      const button = document.createElement("button");
      button.type = "submit";
      button.name = "_continue";
      button.setAttribute("form", config.resolveForm);
      button.className = "button concurrency-live-resolve";
      button.textContent = config.resolveLabel;
      item.appendChild(button);
    }
    list.appendChild(item);
    place(list);
  }

  function check() {
    if (busy || done || document.visibilityState !== "visible") {
      return;
    }
    busy = true;
    const url = config.endpoint + "?since=" + encodeURIComponent(config.since);
    window
      .fetch(url, {
        headers: { "If-None-Match": config.etag, Accept: "application/json" },
        credentials: "same-origin",
        cache: "no-store",
        redirect: "error",
      })
      .then(function (response) {
        if (response.status === 304) {
          return null;
        }
        if (response.status !== 200 && response.status !== 404) {
          // Logged out, no longer allowed, or the server is unwell: stay quiet.
          done = true;
          stop();
          return null;
        }
        return response.json();
      })
      .then(function (data) {
        if (data && data.message) {
          done = true;
          stop();
          show(data);
        }
      })
      .catch(function () {
        /* A network error: try again at the next tick. */
      })
      .finally(function () {
        busy = false;
      });
  }

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") {
      check();
      start();
    } else {
      stop();
    }
  });
  window.addEventListener("focus", check);
  start();
})(document.currentScript);
