"""The service's routes, one module per area; each route validates, calls a workflow, audits and responds."""
