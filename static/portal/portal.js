// Small progressive enhancements; every page works without JavaScript. No inline scripts (CSP).
(function () {
  "use strict";
  // After htmx swaps a preview in, move focus to it so keyboard and screen-reader users land on the new content.
  document.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail && event.detail.target;
    if (target && target.id === "change-preview") {
      var fresh = document.getElementById("change-preview");
      var heading = fresh && fresh.querySelector("h2, [role=alert]");
      if (heading && !(event.detail.requestConfig && event.detail.requestConfig.triggeringEvent &&
          event.detail.requestConfig.triggeringEvent.type === "input")) {
        heading.setAttribute("tabindex", "-1");
        heading.focus();
      }
    }
  });
  // A refused preview (422: bad input such as an invalid promotion code; 409: it changed meanwhile) comes back as
  // the preview fragment with its explanation: show it in place (htmx swaps only 2xx responses by default).
  document.addEventListener("htmx:beforeSwap", function (event) {
    var detail = event.detail;
    var status = detail && detail.xhr && detail.xhr.status;
    if ((status === 422 || status === 409) && detail.target && detail.target.id === "change-preview") {
      detail.shouldSwap = true;
      detail.isError = false;
    }
  });
  // Destructive buttons ask first (data-confirm); without JavaScript the server-side rules still apply.
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-confirm]");
    if (button && !window.confirm(button.getAttribute("data-confirm"))) { event.preventDefault(); }
  });
  // Select a shown-once secret when focused, so it is easy to copy.
  document.addEventListener("focusin", function (event) {
    if (event.target.matches && event.target.matches("[data-select-on-focus]")) { event.target.select(); }
  });
  // Pricing: the monthly/annual toggle switches which prices are shown.
  document.addEventListener("change", function (event) {
    var input = event.target;
    if (input.hasAttribute && input.hasAttribute("data-interval-toggle")) {
      var root = document.querySelector("[data-interval-root]");
      if (root) {
        root.classList.remove("interval-month", "interval-year");
        root.classList.add("interval-" + input.value);
      }
    }
  });
})();
