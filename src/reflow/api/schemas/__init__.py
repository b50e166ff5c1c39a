"""Request and response models of the API edge. Routers still hand services plain
dicts (the services keep their own validation and Census-worded messages); these
models make ``/openapi.json`` describe every body and every answer truthfully."""
