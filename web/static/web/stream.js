/* Follows a spec's event stream (GET /api/v1/specs/{id}/stream, Server-Sent Events).
 *
 * The browser's EventSource reconnects by itself after a dropped connection and sends the last
 * id it saw as Last-Event-ID, so the server resumes with no gap. When the server is gone for good
 * (EventSource gives up), this reconnects from the last sequence with ?after=. An `end` event
 * closes the stream: the spec is settled. Sequences at or below the last one handled are ignored.
 */
(function () {
  "use strict";

  // EventSource hands a named event only to a listener of that name: these are the names.
  var TYPES = [
    "spec.launched", "spec.status_changed", "spec.phase_started", "spec.phase_completed",
    "spec.phase_retry", "spec.phase_failed", "spec.phase_requeued", "spec.planning_complete",
    "spec.approved", "spec.replan_requested", "spec.requirement_updated", "spec.executing",
    "spec.execution_resumed", "spec.execution_stopped", "spec.progress", "spec.completed",
    "spec.failed", "spec.branch_pushed", "spec.pull_request_opened",
    "ticket.created", "ticket.transitioned",
    "task.started", "task.verification", "task.verification_failed", "task.verified", "task.failed",
    "agent.started", "agent.turn", "agent.tool_call", "agent.tool_result", "agent.finished",
    "agent.message_queued", "agent.message_injected",
    "guardian.nudged", "guardian.escalated", "guardian.stopped", "guardian.flagged",
    "spec.budget_changed", "spec.pull_request_failed",
    "sandbox.acquired", "sandbox.released", "sandbox.failed", "sandbox.refused",
    "sandbox.file_changed", "sandbox.command",
    "git.merged", "message"
  ];

  function OmoiStream(url, handlers) {
    var question = url.indexOf("?");
    this.base = question < 0 ? url : url.slice(0, question);
    var match = /[?&]after=(\d+)/.exec(url);
    this.last = match ? parseInt(match[1], 10) : 0;
    this.start = this.last;
    this.handlers = handlers || {};
    this.received = [];
    this.opened = 0;
    this.ended = false;
    this.open(url);
  }

  OmoiStream.TYPES = TYPES;

  OmoiStream.prototype.state = function (name) {
    if (this.handlers.onState) this.handlers.onState(name, this);
  };

  OmoiStream.prototype.open = function (url) {
    var self = this;
    var source = new EventSource(url, { withCredentials: true });
    this.source = source;
    source.onopen = function () {
      self.opened += 1;
      self.state("live");
    };
    var handle = function (message) {
      var sequence = parseInt(message.lastEventId, 10);
      self.received.push(sequence);
      if (!(sequence > self.last)) return;
      self.last = sequence;
      var event;
      try {
        event = JSON.parse(message.data);
      } catch (error) {
        return;
      }
      if (self.handlers.onEvent) self.handlers.onEvent(event, self);
    };
    TYPES.forEach(function (type) {
      source.addEventListener(type, handle);
    });
    source.addEventListener("end", function () {
      self.ended = true;
      source.close();
      self.state("ended");
      if (self.handlers.onEnd) self.handlers.onEnd(self);
    });
    source.onerror = function () {
      if (self.ended) return;
      self.state("reconnecting");
      if (source.readyState === EventSource.CLOSED) {
        window.setTimeout(function () {
          if (!self.ended) self.open(self.base + "?after=" + self.last);
        }, 2000);
      }
    };
  };

  OmoiStream.prototype.close = function () {
    this.ended = true;
    if (this.source) this.source.close();
  };

  window.OmoiStream = OmoiStream;
  window.omoiStreams = window.omoiStreams || [];
})();
