"""Pydantic models of the ``platform.runwhen.com/v1alpha1`` custom resources (spec and status).

The single source of the CRD schemas (``runwhen_operator.crdgen`` turns them into ``crds/*.yaml``):

- ``common``: group, version, finalizer and annotation names, durations, shared types and status;
- ``connection``: ClusterRunWhenConnection and RunWhenConnection;
- ``workspace``, ``workflow``, ``persona``, ``workflowrun``: one module per kind;
- ``kinds``: the registry of kinds (names, scope, models, printer columns, examples).

This package imports nothing else of the operator.
"""
