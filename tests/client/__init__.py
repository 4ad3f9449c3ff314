"""Tests of the RunWhen API client."""
