"""runwhen_operator.reconcile."""
