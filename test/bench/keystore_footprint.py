#!/usr/bin/env python3
"""First-boot wall time and peak private memory of simprov-agent per key
store (docs/BENCHMARKS.md, "Device keys in hardware").

Starts a broker and a software TPM (swtpm) on loopback, imports one SIM,
and runs `simprov-agent bootstrap --force` RUNS times per store, polling
/proc/PID/smaps_rollup (Private_Clean + Private_Dirty) every millisecond.

usage: keystore_footprint.py BUILD_DIR [RUNS]
"""
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def free_port_pair():
    for _ in range(50):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        p = s.getsockname()[1]
        s.close()
        t = socket.socket()
        try:
            t.bind(("127.0.0.1", p + 1))
            return p
        except OSError:
            pass
        finally:
            t.close()
    raise SystemExit("no free port pair")


def private_kib(pid):
    total = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith(("Private_Clean:", "Private_Dirty:")):
                    total += int(line.split()[1])
    except OSError:
        return None
    return total


def run_once(argv):
    start = time.monotonic()
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    peak = 0
    while p.poll() is None:
        kib = private_kib(p.pid)
        if kib:
            peak = max(peak, kib)
        time.sleep(0.001)
    wall = time.monotonic() - start
    if p.returncode != 0:
        raise SystemExit(f"{argv}: exit {p.returncode}: "
                         f"{p.stderr.read().decode()}")
    return wall, peak


def main():
    build = os.path.abspath(sys.argv[1])
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 15
    work = tempfile.mkdtemp()
    procs = []
    try:
        port = free_port_pair()
        tpm_dir = os.path.join(work, "tpm")
        os.mkdir(tpm_dir)
        procs.append(subprocess.Popen(
            ["swtpm", "socket", "--tpm2", "--server",
             f"type=tcp,port={port},bindaddr=127.0.0.1", "--ctrl",
             f"type=tcp,port={port + 1},bindaddr=127.0.0.1", "--tpmstate",
             f"dir={tpm_dir}", "--flags", "startup-clear,not-need-init"],
            stderr=subprocess.DEVNULL))
        data = os.path.join(work, "broker")
        procs.append(subprocess.Popen(
            [f"{build}/broker/simprov-broker", "--data-dir", data, "--listen",
             "127.0.0.1:0", "--rate-burst", "100000", "--rate-refill", "1ms"],
            stderr=subprocess.DEVNULL))
        addr_file = os.path.join(data, "listen-address")
        for _ in range(1500):
            if os.path.exists(addr_file) and open(addr_file).read().strip():
                break
            time.sleep(0.02)
        addr = open(addr_file).read().strip()
        imsi, k, opc = "001010000009901", secrets.token_hex(16), \
            secrets.token_hex(16)
        csv = os.path.join(work, "sims.csv")
        with open(csv, "w") as f:
            f.write(f"imsi,ki,opc\n{imsi},{k},{opc}\n")
        subprocess.run([f"{build}/broker/simprov", "--data-dir", data,
                        "subscribers", "import", csv], check=True,
                       stdout=subprocess.DEVNULL)
        sim = os.path.join(work, "sim.json")
        with open(sim, "w") as f:
            f.write(f'{{"imsi": "{imsi}", "k": "{k}", "opc": "{opc}"}}\n')
        stores = {"file": "file",
                  "tpm2 (swtpm)": f"tpm2:swtpm:host=127.0.0.1,port={port}"}
        print("| store | first boot wall, median (p90) | peak private, "
              "median (max) |")
        print("|---|---|---|")
        for name, spec in stores.items():
            out = os.path.join(work, "out-" + name.split()[0])
            argv = [f"{build}/agent/simprov-agent", "bootstrap", "--force",
                    "--broker", addr, "--sim", f"soft:{sim}", "--out", out,
                    "--key", spec]
            run_once(argv)  # warm-up
            walls, peaks = [], []
            for _ in range(runs):
                w, p = run_once(argv)
                walls.append(w * 1000)
                peaks.append(p / 1024)
            walls.sort()
            p90 = walls[int(0.9 * (len(walls) - 1))]
            print(f"| {name} | {statistics.median(walls):.0f} ms "
                  f"({p90:.0f} ms) | {statistics.median(peaks):.1f} MiB "
                  f"({max(peaks):.1f} MiB) |")
    finally:
        for p in procs:
            p.terminate()
            p.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
