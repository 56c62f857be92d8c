#!/usr/bin/env python3
"""sprig bench-e2e --profile on the CPU emulator (timings mean nothing there;
the plumbing is what is checked): every row of the JSON carries a profile
whose launches per token add up to the decode step's launches as
`sprig analyze --model-dir` describes them from the backend's own code (so
every launch was profiled, once), each kernel with a positive time and a
prediction, and --profile is refused off the cuda backend.

usage: check_bench_e2e_profile.py SPRIG_EMU_CLI SPRIG MODEL_DIR OUT_JSON"""
import json
import subprocess
import sys

emu, sprig, model, out = sys.argv[1:5]


def fail(msg):
    print("check_bench_e2e_profile: " + msg)
    sys.exit(1)


r = subprocess.run([emu, "bench-e2e", model, "--tokens", "2", "--warmup", "0", "--no-roof", "--profile",
                    "--json", out], capture_output=True, text=True)
if r.returncode:
    fail(f"bench-e2e --profile exited {r.returncode}:\n{r.stdout}\n{r.stderr}")
if "each launch timed alone" not in r.stdout:
    fail("no profile table printed:\n" + r.stdout)
rows = json.load(open(out))["rows"]
a = subprocess.run([sprig, "analyze", "--model-dir", model, "--gpu", "h200", "--no-sass", "--json"],
                   capture_output=True, text=True)
if a.returncode:
    fail("analyze --model-dir failed: " + a.stderr)
launches = {s["mode"]: s["launches_per_token"] for s in json.loads(a.stdout)["steps"]}
if [x["mode"] for x in rows] != ["dense", "lte"]:
    fail(f"rows {[x['mode'] for x in rows]}")
for row in rows:
    prof = row.get("profile")
    if not prof or prof["tokens"] != 2:
        fail(f"{row['mode']}: no profile of 2 tokens: {prof}")
    total = sum(k["launches_per_token"] for k in prof["kernels"])
    if abs(total - launches[row["mode"]]) > 1e-9:
        fail(f"{row['mode']}: {total} launches per token profiled, the step has {launches[row['mode']]}")
    for k in prof["kernels"]:
        if not k["us_each"] > 0 or not k.get("predicted_us", 0) > 0 or not k["key"].startswith(k["family"] + ":"):
            fail(f"{row['mode']}: kernel {k}")
r = subprocess.run([sprig, "bench-e2e", model, "--backend", "cpu", "--profile"], capture_output=True, text=True)
if r.returncode != 2 or "--profile" not in r.stderr:
    fail(f"--profile on the cpu backend: exit {r.returncode}, {r.stderr!r}")
print(f"check_bench_e2e_profile: ok ({', '.join(f'{m} {n} launches/token' for m, n in launches.items())})")
