"""Template helpers of billing: `billing_money` (`{% money %}` and `{% day %}` on invoice and credit-note documents,
through `subscriptions.money`) and `backoffice` (the back office's work queues on the admin index)."""
