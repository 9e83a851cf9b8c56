#!/usr/bin/env python3
"""IKE SA + child SA setups driven through charon's VICI socket: the initiator load
bench/compare.sh puts on each responder (vpnd or charon), the same for both.

Debian ships no strongSwan load-tester plugin, so charon itself, told over VICI to
initiate, is the load generator (after ../shared/interop/strongswan/vici_rate.py).
The initiator's strongswan.conf needs charon.reuse_ikesa = no, so that every initiate
makes a new IKE SA.

  vici_rate.py SOCKET seq N    N x (initiate "a-b", wait until its child SA is up,
                               terminate and wait for the Delete's answer): latency
  vici_rate.py SOCKET fan K    initiate connections c1..cK at once (each from its own
                               address, so a responder with one IKE SA per peer takes
                               them all), time until K child SAs are up; the SAs stay
                               up until `down K` (memory is read meanwhile)
  vici_rate.py SOCKET down K   terminate c1..cK, wait until none is left

Prints one JSON object on stdout.
"""

import json
import socket
import statistics
import sys
import threading
import time

import vici


def session(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return vici.Session(s)


def drain(gen):
    for _ in gen:
        pass


def seq(path, n):
    sess = session(path)
    lat, fails = [], 0
    for _ in range(n):
        t0 = time.perf_counter()
        try:
            # timeout 0: return only once the child SA is up (or failed).
            drain(sess.initiate({"ike": "a-b", "child": "net", "timeout": "0", "init-limits": "no"}))
            lat.append((time.perf_counter() - t0) * 1000)
        except Exception:  # vici raises on a failed initiate; count it, go on
            fails += 1
        drain(sess.terminate({"ike": "a-b", "timeout": "0"}))
    lat.sort()
    done = len(lat)
    return {
        "n": n,
        "fails": fails,
        "median_ms": round(statistics.median(lat), 3) if lat else None,
        "p95_ms": round(lat[max(0, int(done * 0.95) - 1)], 3) if lat else None,
        "setups_per_s": round(done / (sum(lat) / 1000), 1) if lat else 0,
    }


def fan(path, k):
    up = {"n": 0, "down": 0}
    done = threading.Event()
    ready = threading.Event()

    def listener():
        gen = session(path).listen(["child-updown", "ike-updown"])
        ready.set()
        for label, ev in gen:
            if label == b"child-updown" and ev.get("up") == b"yes":
                up["n"] += 1
                if up["n"] >= k:
                    done.set()
            elif label == b"ike-updown" and ev.get("up") != b"yes":
                up["down"] += 1

    threading.Thread(target=listener, daemon=True).start()
    ready.wait(5)
    time.sleep(0.2)
    sess = session(path)
    t0 = time.perf_counter()
    for i in range(1, k + 1):
        # timeout -1: do not wait, fire the next one at once.
        drain(sess.initiate({"ike": f"c{i}", "child": "net", "timeout": "-1", "init-limits": "no"}))
    complete = done.wait(120)
    wall = time.perf_counter() - t0
    return {
        "k": k,
        "established": up["n"],
        "complete": complete,
        "ike_down_during": up["down"],
        "wall_s": round(wall, 3),
        "setups_per_s": round(up["n"] / wall, 1),
    }


def down(path, k):
    sess = session(path)
    for i in range(1, k + 1):
        drain(sess.terminate({"ike": f"c{i}", "timeout": "-1"}))
    end = time.time() + 60
    while time.time() < end:
        if sum(1 for _ in sess.list_sas()) == 0:
            return {"cleaned_up": True}
        time.sleep(0.2)
    return {"cleaned_up": False}


if __name__ == "__main__":
    sock, mode, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    print(json.dumps({"seq": seq, "fan": fan, "down": down}[mode](sock, count)))
