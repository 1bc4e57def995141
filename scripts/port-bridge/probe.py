"""Drive one of the lab's Port sessions with aws-ssm-bridge (PyPI), a client no one here wrote.

Run by scripts/port-bridge/run, inside a private mount namespace whose /etc/hosts points the
stream URL's host (ssmmessages.REGION.amazonaws.com) at 127.0.0.1. Starts a port session to the
production task's SERVER_PORT through the library's SessionManager and PortForwarder, fetches
`GET /` through the forward (once, then ten at once) and directly from the Evolution stand-in,
and prints them with the lab's row for the session. Exit 0 when every answer is identical.
"""

import asyncio
import json
import ssl
import sys
import time
import urllib.request

import aws_ssm_bridge

CLUSTER = "alinhou-production"


def control(ready, path, context):
    with urllib.request.urlopen(ready["control"] + path, context=context, timeout=10) as answer:
        return json.load(answer)


def fetch(port, host):
    # One Host header for both requests: the stand-in's answer names it (its `manager` URL).
    request = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"Connection": "close", "Host": host})
    with urllib.request.urlopen(request, timeout=20) as answer:
        return answer.status, answer.read()


async def main(ready_path):
    ready = json.load(open(ready_path))
    context = ssl.create_default_context(cafile=ready["ca_bundle"]) if ready.get("ca_bundle") else None
    task = None
    deadline = time.monotonic() + 20
    while task is None:  # the production task's agent, once RUNNING
        assert time.monotonic() < deadline, "the production task's agent never ran"
        task = next(
            (
                t
                for t in control(ready, "/state", context)["tasks"]
                if t["clusterArn"].endswith("/" + CLUSTER)
                and t["lastStatus"] == "RUNNING"
                and t["containers"][0].get("managedAgents", [{}])[0].get("lastStatus") == "RUNNING"
            ),
            None,
        )
        if task is None:
            await asyncio.sleep(0.05)
    task_id = task["taskArn"].rsplit("/", 1)[1]
    target = f"ecs:{CLUSTER}_{task_id}_{task['containers'][0]['runtimeId']}"
    stand_in = next(p["port"] for p in control(ready, "/evolution/processes", context) if p["task"] == task_id)

    manager = await aws_ssm_bridge.SessionManager.new(region=ready["region"])
    session = await manager.start_port_forward(target, 8080)
    await session.wait_ready()
    print(f"session {session.id}: agent {session.agent_version}, target {session.target}")
    forwarder = await aws_ssm_bridge.PortForwarder.bind("127.0.0.1:0")
    print(f"forwarding {forwarder.address} -> {target}:8080")
    forwarding = asyncio.ensure_future(forwarder.forward(session))
    loop = asyncio.get_running_loop()
    host = f"127.0.0.1:{forwarder.port}"
    through = await loop.run_in_executor(None, fetch, forwarder.port, host)
    direct = await loop.run_in_executor(None, fetch, stand_in, host)
    # Ten at once: one smux stream each.
    many = await asyncio.gather(*(loop.run_in_executor(None, fetch, forwarder.port, host) for _ in range(10)))
    print(f"ten concurrent requests through the forward identical to the direct answer: {all(m == direct for m in many)}")
    print(f"through the forward: {through[0]} {through[1][:200]!r}")
    print(f"directly:            {direct[0]} {direct[1][:200]!r}")
    forwarder.stop()
    await session.terminate()
    await asyncio.wait_for(forwarding, 10)
    row = next(s for s in control(ready, "/port-sessions", context) if s["session_id"] == session.id)
    print("lab:", json.dumps({k: row[k] for k in ("client_version", "mode", "streams", "terminated", "end_reason")}))
    same = through == direct and all(m == direct for m in many)
    print("identical" if same else "DIFFERENT")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1])))
