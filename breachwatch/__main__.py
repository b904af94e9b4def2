from breachwatch.cli import entrypoint

entrypoint()
