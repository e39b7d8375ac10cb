// precimed web pages: the only first-party script (the Content-Security-Policy allows no inline script).
// - Every htmx request carries the page's CSRF token as X-CSRF-Token (from <meta name="csrf-token">), so a
//   state-changing hx-post passes the server's csrf_protect check like a form with its hidden csrf_token field.
// - An htmx request that fails (403, 422, 500 ...) is not swapped in (htmx's default); its message is shown in the
//   page's #htmx-error box, as text only (the error page is parsed, never inserted as HTML).
// - A session that ended answers htmx with HX-Redirect to /signin, which htmx follows as a full page load.
// - A Print button (any element with a data-print attribute, e.g. on the patient result) opens the browser's print
//   dialog; the page's print stylesheet lays the result out for paper. It is rendered hidden and shown here, so a
//   browser without JavaScript never shows a button that does nothing. Result fragments arrive by htmx swaps, hence
//   the click is handled on the document and buttons are revealed again after every swap.
(function () {
  "use strict";
  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }
  function errorBox() {
    return document.getElementById("htmx-error");
  }
  document.addEventListener("htmx:configRequest", function (event) {
    event.detail.headers["X-CSRF-Token"] = csrfToken();
  });
  document.addEventListener("htmx:responseError", function (event) {
    var box = errorBox();
    var xhr = event.detail.xhr;
    if (!box || !xhr) { return; }
    var message = "";
    try {
      var doc = new DOMParser().parseFromString(xhr.responseText || "", "text/html");
      var found = doc.querySelector(".error p");
      message = found ? found.textContent : "";
    } catch (e) {
      message = "";
    }
    box.textContent = "The request failed (" + xhr.status + "). " + (message || "Reload the page and try again.");
    box.hidden = false;
  });
  document.addEventListener("htmx:sendError", function () {
    var box = errorBox();
    if (!box) { return; }
    box.textContent = "The server could not be reached. Check the connection and try again.";
    box.hidden = false;
  });
  document.addEventListener("htmx:beforeRequest", function () {
    var box = errorBox();
    if (box) { box.hidden = true; }
  });
  function revealPrintButtons(root) {
    var scope = root && root.querySelectorAll ? root : document;
    var buttons = scope.querySelectorAll("[data-print][hidden]");
    for (var i = 0; i < buttons.length; i++) { buttons[i].hidden = false; }
  }
  document.addEventListener("click", function (event) {
    var target = event.target instanceof Element ? event.target.closest("[data-print]") : null;
    if (!target) { return; }
    event.preventDefault();
    window.print();
  });
  document.addEventListener("htmx:afterSettle", function () { revealPrintButtons(document); });
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { revealPrintButtons(document); });
  } else {
    revealPrintButtons(document);
  }
})();
