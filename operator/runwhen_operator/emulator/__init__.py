"""runwhen_operator.emulator."""
