"""Is the BreachWatch process in this container alive, or ready? For container health checks
(the image's HEALTHCHECK, compose), which run every few seconds:

    python -m breachwatch.probe run|console [--ready]

Exit status 0 yes, 1 no. The standard library only, and the address from the environment only
(not from BREACHWATCH_CONFIG): it starts in a tenth of the time the full command line takes,
which loads every setting and command. ``breachwatch health`` asks the same question with every
source of settings.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

# The settings' defaults (``core.settings``; a test keeps them equal).
DEFAULT_HOST = "127.0.0.1"
DEFAULT_CONSOLE_PORT = 8080
WILDCARDS = frozenset({"0.0.0.0", "::", ""})


def url(host: str, port: int, path: str) -> str:
    """Where to ask; a process listening on every address is asked on the loopback one."""
    host = DEFAULT_HOST if host in WILDCARDS else host
    return f"http://{f'[{host}]' if ':' in host else host}:{port}{path}"


def ask(address: str, timeout: float = 5.0) -> tuple[int, str]:
    """HTTP status and body of a GET; status 0 when nothing answered."""
    try:
        with urllib.request.urlopen(address, timeout=timeout) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")
    except OSError as exc:
        return 0, f"no answer from {address}: {exc}"


def _address(process: str, path: str) -> str | None:
    env = os.environ
    if process == "console":
        port = int(env.get("BREACHWATCH_CONSOLE_PORT") or DEFAULT_CONSOLE_PORT)
        return url(env.get("BREACHWATCH_CONSOLE_HOST", DEFAULT_HOST), port, path)
    if not env.get("BREACHWATCH_METRICS_PORT"):
        return None
    return url(env.get("BREACHWATCH_METRICS_HOST", DEFAULT_HOST), int(env["BREACHWATCH_METRICS_PORT"]), path)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("run", "console") or set(argv[1:]) - {"--ready"}:
        print("usage: python -m breachwatch.probe run|console [--ready]", file=sys.stderr)
        return 2
    address = _address(argv[0], "/readyz" if "--ready" in argv else "/healthz")
    if address is None:
        print("BREACHWATCH_METRICS_PORT is not set: `run` serves no health endpoint without it", file=sys.stderr)
        return 2
    status, body = ask(address)
    print(body)
    return 0 if status == 200 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
