"""runwhen_operator.runwhen."""
