"""runwhen_operator.handlers."""
