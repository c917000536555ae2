/* Live pages: the board's cards move, the spec's summary and the run's transcript follow as the
 * spec's events arrive. Events are triggers: a card moves at once on ticket.transitioned, and
 * the part of the page an event touches is fetched again (server-rendered, escaped) a moment
 * later, so what is shown is always what the server says. No reload.
 */
(function () {
  "use strict";

  var config = document.getElementById("omoi-streams");
  var board = document.getElementById("board");
  var allParts = Array.prototype.slice.call(document.querySelectorAll("[data-refresh-url]"));
  // Parts that name the events they follow (data-refresh-on: type prefixes) refresh on those only;
  // the spec page's summary and details on the spec's own moves.
  var parts = allParts.filter(function (part) { return !part.hasAttribute("data-refresh-on"); });
  var steeringParts = allParts.filter(function (part) { return part.hasAttribute("data-refresh-on"); });
  var transcript = document.getElementById("transcript");
  var liveState = document.getElementById("live-state");

  function debounce(action, delay) {
    var timer = null;
    return function () {
      if (timer) window.clearTimeout(timer);
      timer = window.setTimeout(function () {
        timer = null;
        action();
      }, delay);
    };
  }

  function openDetails(element) {
    var open = {};
    element.querySelectorAll("details[id]").forEach(function (details) {
      open[details.id] = details.open;
    });
    return open;
  }

  function replace(element, url, after) {
    return fetch(url, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
      .then(function (response) {
        if (!response.ok) return null;
        return response.text().then(function (html) {
          return { html: html, response: response };
        });
      })
      .then(function (result) {
        if (result === null) return;
        var open = openDetails(element);
        element.innerHTML = result.html;
        Object.keys(open).forEach(function (id) {
          var details = document.getElementById(id);
          if (details) details.open = open[id];
        });
        if (after) after(result.response);
      })
      .catch(function () {});
  }

  function updateCounts() {
    board.querySelectorAll("[data-column]").forEach(function (column) {
      var count = column.querySelector(".count");
      if (count) count.textContent = column.querySelectorAll(".card").length;
    });
  }

  function moveCard(event) {
    var card = document.getElementById("card-" + event.ticket);
    var column = board.querySelector('[data-column="' + event.payload.to_phase + '"]');
    if (!card || !column) return;
    column.appendChild(card);
    card.setAttribute("data-phase", event.payload.to_phase);
    updateCounts();
  }

  var refreshBoard = board
    ? debounce(function () {
        replace(board, board.getAttribute("data-cards-url"));
      }, 250)
    : function () {};
  var refreshBody = debounce(function () {
    parts.forEach(function (part) {
      replace(part, part.getAttribute("data-refresh-url"));
    });
  }, 400);

  // A message form shows while its part says the agent takes messages (data-accepting); the
  // form itself is never re-rendered, so a half-typed message survives every refresh.
  function showForm(part) {
    var form = document.getElementById(part.getAttribute("data-form") || "");
    var state = part.querySelector("[data-accepting]");
    if (form && state) form.hidden = state.getAttribute("data-accepting") !== "true";
  }

  function steeringRefresher(part) {
    return debounce(function () {
      replace(part, part.getAttribute("data-refresh-url"), function () { showForm(part); });
    }, 300);
  }

  var steering = steeringParts.map(function (part) {
    return {
      part: part,
      prefixes: part.getAttribute("data-refresh-on").split(/\s+/).filter(Boolean),
      run: parseInt(part.getAttribute("data-run"), 10) || null,
      task: parseInt(part.getAttribute("data-task"), 10) || null,
      refresh: steeringRefresher(part)
    };
  });

  function concerns(item, event) {
    var type = event.type || "";
    if (!item.prefixes.some(function (prefix) { return type.indexOf(prefix) === 0; })) return false;
    if (!item.run) return true;  // a spec's part: every event of the spec
    var payload = event.payload || {};
    if (payload.run === item.run) return true;
    return item.task ? event.task === item.task : !event.task;
  }

  var refreshTranscript = transcript
    ? debounce(function () {
        var count = parseInt(transcript.getAttribute("data-count"), 10) || 0;
        var from = Math.max(count - 1, 0);
        var url = transcript.getAttribute("data-messages-url") + "?from=" + from;
        fetch(url, { credentials: "same-origin" })
          .then(function (response) {
            if (!response.ok) return null;
            return response.text().then(function (html) {
              return { html: html, response: response };
            });
          })
          .then(function (result) {
            if (result === null) return;
            transcript.querySelectorAll("[data-index]").forEach(function (message) {
              if (parseInt(message.getAttribute("data-index"), 10) >= from) message.remove();
            });
            transcript.insertAdjacentHTML("beforeend", result.html);
            transcript.setAttribute("data-count", result.response.headers.get("X-Message-Count") || count);
            var status = document.getElementById("run-status");
            var runStatus = result.response.headers.get("X-Run-Status");
            if (status && runStatus) status.textContent = runStatus;
          })
          .catch(function () {});
      }, 300)
    : function () {};

  var VERIFICATIONS = {
    "task.verification": function (p) {
      return "The host ran `" + (p.command || "") + "`: " + (p.passed ? "passed" : "failed") +
        (p.tests_passed !== undefined ? " (" + p.tests_passed + " tests passed)" : "");
    },
    "task.verification_failed": function () {
      return "The host's checks failed; the output went back to the agent";
    },
    "task.verified": function (p) {
      return "Verified by the host" + (p.tests_passed !== undefined ? " (" + p.tests_passed + " tests passed)" : "");
    },
    "task.failed": function (p) {
      return "Task failed: " + (p.reason || "");
    }
  };

  function addVerification(event) {
    var list = document.getElementById("verification-list");
    if (!list || !VERIFICATIONS[event.type]) return;
    var empty = document.getElementById("no-verifications");
    if (empty) empty.remove();
    var item = document.createElement("li");
    item.className = "ev ev-" + event.type.replace(/\./g, "");
    item.setAttribute("data-sequence", event.sequence);
    var time = document.createElement("time");
    time.textContent = (event.created_at || "").replace("T", " ").replace(/\.\d+Z$|Z$/, "");
    var text = document.createElement("span");
    text.textContent = " " + VERIFICATIONS[event.type](event.payload || {});
    item.appendChild(time);
    item.appendChild(text);
    list.appendChild(item);
  }

  function onEvent(event) {
    var type = event.type || "";
    if (board) {
      if (type === "ticket.transitioned") moveCard(event);
      if (type.indexOf("ticket.") === 0 || type.indexOf("task.") === 0 || type === "spec.executing" ||
          type === "spec.progress" || type === "spec.completed") {
        refreshBoard();
      }
    }
    if (parts.length && (type.indexOf("spec.") === 0 || type === "ticket.transitioned" || type === "task.verified" ||
        type === "task.failed")) {
      refreshBody();
    }
    steering.forEach(function (item) {
      if (concerns(item, event)) item.refresh();
    });
    if (transcript) {
      var run = parseInt(transcript.getAttribute("data-run"), 10);
      var task = parseInt(transcript.getAttribute("data-task"), 10);
      var payload = event.payload || {};
      if (payload.run === run || (task && event.task === task)) refreshTranscript();
      if (task && event.task === task) addVerification(event);
    }
  }

  function onState(name) {
    if (liveState) {
      liveState.setAttribute("data-state", name);
      liveState.title = "live updates: " + name;
    }
  }

  function onEnd() {
    refreshBoard();
    refreshBody();
    refreshTranscript();
    steering.forEach(function (item) { item.refresh(); });
  }

  if (config) {
    JSON.parse(config.textContent).forEach(function (stream) {
      window.omoiStreams.push(new window.OmoiStream(stream.url, { onEvent: onEvent, onState: onState, onEnd: onEnd }));
    });
  }
  if (board && board.getAttribute("data-refresh-every")) {
    window.setInterval(refreshBoard, parseInt(board.getAttribute("data-refresh-every"), 10) * 1000);
  }
})();
