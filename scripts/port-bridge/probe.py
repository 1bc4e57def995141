"""Drive the lab's Port sessions with aws-ssm-bridge (PyPI), a client no one here wrote.

Run inside a private mount namespace whose /etc/hosts points the stream URL's host
(ssmmessages.REGION.amazonaws.com) at 127.0.0.1 (scripts/port-bridge/run, or the suite's
tests/it/port_bridge.rs). Two sessions through the library's SessionManager and PortForwarder:

1. AWS-StartPortForwardingSession to the production task's SERVER_PORT (8080): `GET /` once and
   then ten at once through the forward, each compared with the Evolution stand-in's direct
   answer to the same request;
2. AWS-StartPortForwardingSessionToRemoteHost to a lab echo listener (`cache.internal:6379`,
   registered here through the lab's control API): 4 MiB of seeded random bytes sent and read back,
   compared by SHA-256.

Prints one JSON document on stdout: what came back and the lab's record of each session. The
verdicts are the caller's (the suite asserts the document exactly).
"""

import asyncio
import concurrent.futures
import hashlib
import json
import random
import socket
import ssl
import sys
import threading
import time
import urllib.request

import aws_ssm_bridge

CLUSTER = "alinhou-production"
ECHO_HOST, ECHO_PORT = "cache.internal", 6379
ECHO_BYTES = 4 * 1024 * 1024


def control(ready, method, path, context, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(ready["control"] + path, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, context=context, timeout=10) as answer:
        text = answer.read()
        return json.loads(text) if text else None


def fetch(port, host):
    # One Host header for both requests: the stand-in's answer names it (its `manager` URL).
    request = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"Connection": "close", "Host": host})
    with urllib.request.urlopen(request, timeout=20) as answer:
        return answer.status, answer.read()


def echo(port, payload):
    """Send `payload` through the forward and read as many bytes back (the listener echoes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as conn:
        received = bytearray()

        def reader():
            while len(received) < len(payload):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                received.extend(chunk)

        thread = threading.Thread(target=reader)
        thread.start()
        conn.sendall(payload)
        thread.join(90)
        return bytes(received)


def deterministic(size):
    return random.Random(20261207).randbytes(size)


async def production_target(ready, context):
    deadline = time.monotonic() + 20
    while True:  # the production task's agent, once RUNNING
        task = next(
            (
                t
                for t in control(ready, "GET", "/state", context)["tasks"]
                if t["clusterArn"].endswith("/" + CLUSTER)
                and t["lastStatus"] == "RUNNING"
                and t["containers"][0].get("managedAgents", [{}])[0].get("lastStatus") == "RUNNING"
            ),
            None,
        )
        if task is not None:
            task_id = task["taskArn"].rsplit("/", 1)[1]
            return task_id, f"ecs:{CLUSTER}_{task_id}_{task['containers'][0]['runtimeId']}"
        assert time.monotonic() < deadline, "the production task's agent never ran"
        await asyncio.sleep(0.05)


async def forwarded(session, work):
    """Run `work(port)` in a thread against a PortForwarder on `session`, then end both."""
    forwarder = await aws_ssm_bridge.PortForwarder.bind("127.0.0.1:0")
    forwarding = asyncio.ensure_future(forwarder.forward(session))
    try:
        return await asyncio.get_running_loop().run_in_executor(None, work, forwarder.port)
    finally:
        forwarder.stop()
        await session.terminate()
        await asyncio.wait_for(forwarding, 10)


def lab_row(ready, context, session_id):
    row = next(s for s in control(ready, "GET", "/port-sessions", context) if s["session_id"] == session_id)
    keep = ("document", "port_number", "host", "client_version", "mode", "terminated", "ended", "end_reason", "connect_errors")
    summary = {k: row.get(k) for k in keep}
    streams = row["streams"]
    summary["streams"] = len(streams)
    summary["stream_destinations"] = sorted({s["destination"] for s in streams})
    summary["stream_errors"] = [s["error"] for s in streams if s["error"] is not None]
    return summary


async def main(ready_path):
    ready = json.load(open(ready_path))
    context = ssl.create_default_context(cafile=ready["ca_bundle"]) if ready.get("ca_bundle") else None
    task_id, target = await production_target(ready, context)
    stand_in = next(p["port"] for p in control(ready, "GET", "/evolution/processes", context) if p["task"] == task_id)
    manager = await aws_ssm_bridge.SessionManager.new(region=ready["region"])

    # 1. The task's own port.
    session = await manager.start_port_forward(target, 8080)
    await session.wait_ready()
    agent_version = session.agent_version

    def requests(port):
        host = f"127.0.0.1:{port}"
        direct = fetch(stand_in, host)
        once = fetch(port, host)
        with concurrent.futures.ThreadPoolExecutor(10) as pool:
            many = list(pool.map(lambda _: fetch(port, host), range(10)))
        return direct, once, many

    direct, once, many = await forwarded(session, requests)
    port_session = session.id

    # 2. A host the task reaches.
    control(ready, "POST", "/remote-hosts", context, {"host": ECHO_HOST, "port": ECHO_PORT, "kind": "echo"})
    payload = deterministic(ECHO_BYTES)
    session = await manager.start_remote_port_forward(target, ECHO_HOST, ECHO_PORT)
    await session.wait_ready()
    back = await forwarded(session, lambda port: echo(port, payload))
    remote_session = session.id

    print(
        json.dumps(
            {
                "agent_version": agent_version,
                "port": {
                    "direct_status": direct[0],
                    "status": once[0],
                    "same_as_direct": once == direct,
                    "concurrent_same_as_direct": sum(m == direct for m in many),
                    "lab": lab_row(ready, context, port_session),
                },
                "remote_host": {
                    "sent_sha256": hashlib.sha256(payload).hexdigest(),
                    "received_bytes": len(back),
                    "received_sha256": hashlib.sha256(back).hexdigest(),
                    "lab": lab_row(ready, context, remote_session),
                },
            },
            indent=2,
            sort_keys=True,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1])))
