"""runwhen-operator: RunWhen Platform resources as Kubernetes custom resources."""

__version__ = "0.1.0"
