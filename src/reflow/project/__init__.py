"""Config as code: a project folder of YAML files exported from, planned against and
applied to a Reflow workspace through the Census API (``reflow export/plan/apply``),
and the terminal commands for sync runs (``reflow run/runs/rejected``)."""
