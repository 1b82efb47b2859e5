// The worklist keeps itself current: every data-every seconds it asks data-url (with the page's
// own filters) for its lines, sending the change token it holds; 304: nothing changed. The new
// lines replace the old in place: the filters, the scroll position and the focused button stay.
// 401: the session ended (these requests never keep it alive), so the page reloads to log in.
"use strict";
(function () {
  const region = document.getElementById("worklist-live");
  if (!region) {
    return;
  }
  const every = Number(region.dataset.every || "0") * 1000;
  if (!every) {
    return;
  }
  const url = region.dataset.url + window.location.search;
  const status = document.getElementById("live-status");
  let token = region.dataset.token || "";
  let timer = null;
  let asking = false;

  function say(text) {
    if (status && status.textContent !== text) {
      status.textContent = text;
    }
  }

  // The table's lines by their ids: a line that did not change keeps its element (a button
  // in it keeps its focus, a reference to it stays good), a changed one is replaced.
  function merged(old, fresh) {
    if (old && old.isEqualNode(fresh)) {
      return old;
    }
    if (
      old && old.id === "worklist" && fresh.id === "worklist" &&
      old.tHead && fresh.tHead && old.tHead.isEqualNode(fresh.tHead)
    ) {
      const body = old.tBodies[0];
      const kept = new Map(Array.from(body.rows, function (row) { return [row.id, row]; }));
      const rows = Array.from(fresh.tBodies[0].rows, function (row) {
        const before = kept.get(row.id);
        return before && before.isEqualNode(row) ? before : row;
      });
      const same = rows.length === body.rows.length &&
        rows.every(function (row, index) { return row === body.rows[index]; });
      if (!same) {
        body.replaceChildren.apply(body, rows);
      }
      return old;
    }
    return fresh;
  }

  function swap(html) {
    const focused = document.activeElement;
    const focusedId = focused && region.contains(focused) ? focused.id : "";
    const parsed = document.createElement("template");
    parsed.innerHTML = html;
    const before = Array.from(region.children);
    const parts = Array.from(parsed.content.children, function (fresh, index) {
      return merged(before[index], fresh);
    });
    const same = parts.length === before.length &&
      parts.every(function (part, index) { return part === before[index]; });
    if (!same) {
      region.replaceChildren.apply(region, parts);
    }
    if (focusedId && document.activeElement !== focused) {
      const again = document.getElementById(focusedId);
      if (again) {
        again.focus({ preventScroll: true });
      }
    }
  }

  async function check() {
    timer = null;
    if (document.hidden || asking) {
      return; // asked again when the page is shown
    }
    asking = true;
    try {
      const answer = await fetch(url, {
        headers: { "If-None-Match": '"' + token + '"' },
        credentials: "same-origin",
        cache: "no-store",
      });
      if (answer.status === 401) {
        window.location.reload();
        return;
      }
      if (answer.status === 200) {
        const html = await answer.text();
        token = (answer.headers.get("ETag") || "").replace(/"/g, "");
        swap(html);
      } else if (answer.status !== 304) {
        say("Not updated (" + answer.status + "): use Refresh.");
        return;
      }
      say("Updates by itself.");
    } catch (error) {
      say("Not connected: trying again.");
    } finally {
      asking = false;
    }
    later();
  }

  function later() {
    if (timer === null) {
      timer = window.setTimeout(check, every);
    }
  }

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && timer === null) {
      check();
    }
  });
  say("Updates by itself.");
  later();
})();
