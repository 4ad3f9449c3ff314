"""runwhen_operator.api."""
