// Card form and payment approval with Stripe.js (loaded from settings.STRIPE_JS_URL before this file).
// Kept as a static file: the portal's Content-Security-Policy allows no inline script.
(function () {
  "use strict";

  function showError(message) {
    var box = document.getElementById("card-errors");
    if (box) { box.textContent = message || "Something went wrong. Please try again."; }
  }

  function setupCardForm(form) {
    var stripe = Stripe(form.dataset.publishableKey);
    var elements = stripe.elements();
    var card = elements.create("card");
    card.mount("#card-element");
    var busy = false;
    form.addEventListener("submit", function (event) {
      if (busy) { return; }
      event.preventDefault();
      busy = true;
      var button = document.getElementById("card-submit");
      if (button) { button.disabled = true; }
      stripe.confirmCardSetup(form.dataset.clientSecret, { payment_method: { card: card } }).then(function (result) {
        if (result.error) {
          showError(result.error.message);
          busy = false;
          if (button) { button.disabled = false; }
          return;
        }
        form.submit();
      });
    });
  }

  function setupAuthenticateForm(form) {
    var stripe = Stripe(form.dataset.publishableKey);
    var busy = false;
    form.addEventListener("submit", function (event) {
      if (busy) { return; }
      event.preventDefault();
      busy = true;
      stripe.confirmCardPayment(form.dataset.clientSecret).then(function (result) {
        if (result.error) { showError(result.error.message); }
        // Either way the server reads the payment's real state from Stripe.
        form.submit();
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var cardForm = document.getElementById("card-form");
    if (cardForm && window.Stripe) { setupCardForm(cardForm); }
    var authForm = document.getElementById("authenticate-form");
    if (authForm && window.Stripe) { setupAuthenticateForm(authForm); }
  });
})();
