"""Child-process server for the tests: serve.py '<Server.create kwargs as JSON>'.

Prints one line, READY {"endpoint": ..., "dht": ...}, then serves until stdin closes (a clean
shutdown) or the process is killed.
"""

import json
import sys

import hivemind_cpp as hivemind


def main():
    kwargs = json.loads(sys.argv[1])
    kwargs.setdefault("start", True)
    try:
        server = hivemind.Server.create(**kwargs)
    except Exception as e:  # reported to the parent on the READY line's place
        print(f"FAILED {type(e).__name__}: {e}", flush=True)
        return 1
    print("READY " + json.dumps({"endpoint": server.endpoint, "dht": server.dht.endpoint}),
          flush=True)
    sys.stdin.read()  # until the parent closes it
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
