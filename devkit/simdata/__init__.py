"""Reference data for the traffic simulator: jurisdictions, names, networks (``world.json``)."""
