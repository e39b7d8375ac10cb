// The ward board's live updates: server-sent events from /wards/<ward>/events replace the table's rows.
// The rows arrive as HTML rendered (and escaped) by the server; nothing here builds markup from data.
(function () {
  "use strict";
  var body = document.getElementById("ward-rows");
  var status = document.getElementById("ward-status");
  if (!body || !window.EventSource) { return; }
  var url = body.getAttribute("data-events");
  var source = new EventSource(url);
  function count() {
    var n = body.querySelectorAll("tr.ward-row").length;
    if (status) { status.textContent = n + (n === 1 ? " patient" : " patients") + " · live"; }
  }
  source.addEventListener("board", function (event) {
    body.innerHTML = event.data;
    count();
  });
  source.addEventListener("signedout", function () {
    source.close();
    window.location.reload(); // the server answers with the sign-in page
  });
  source.onerror = function () {
    if (source.readyState === EventSource.CLOSED) {
      if (status) { status.textContent = "disconnected: reloading"; }
      window.setTimeout(function () { window.location.reload(); }, 5000);
    } else if (status) {
      status.textContent = "reconnecting…";
    }
  };
})();
