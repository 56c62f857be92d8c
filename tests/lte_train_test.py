#!/usr/bin/env python3
"""tools/lte end to end on a tiny fixture (CPU, well under a minute):

  - the grouping is balanced (every expert exactly g neurons) and the written
    expert_permutation is a permutation of 0..f-1;
  - the trained model's held-out sparsity (hard rule) is the target +-5 points;
  - `sprig run FOLDER --tokens ... --backend cpu` loads and runs the folder;
  - sprig's CPU backend reproduces the PyTorch LTE forward of the trained
    model: logits rel err <= 1e-5 and every expert decision equal (lte_check).

usage: lte_train_test.py SPRIG LTE_CHECK. tools/lte needs torch alone
(>= 1.13: Debian 12's python3-torch, which scripts/install-deps.sh installs).
The interpreter is the first of $SPRIG_PYTHON, this one, /usr/bin/python3
that imports torch (this one may be a pyenv or venv Python that does not see
Debian's dist-packages). Exit 77 (skipped) when none does.
"""
import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET, TOL, REL = 0.7, 0.05, 1e-5
FIXTURES = [("tiny-llama2", 32), ("tiny-llama3", 32)]


def python_with_torch():
    for py in [os.environ.get("SPRIG_PYTHON"), sys.executable, "/usr/bin/python3"]:
        r = subprocess.run([py, "-c", "import torch; print(torch.__version__)"], capture_output=True, text=True) \
            if py else None
        if r and r.returncode == 0:
            print(f"lte_train_test: {py}, torch {r.stdout.strip()}")
            return py
    print("lte_train_test: no interpreter here imports torch (apt-get install python3-torch): skipped")
    sys.exit(77)


def text_file(tmp):
    """The King James Bible when bible-kjv-text is installed, else this repo's docs."""
    if subprocess.run(["sh", "-c", "command -v bible"], capture_output=True).returncode == 0:
        return None
    path = os.path.join(tmp, "docs.txt")
    with open(path, "w") as out:
        for name in ["README.md", "docs", "tools/lte/README.md"]:
            p = os.path.join(ROOT, name)
            files = [p] if os.path.isfile(p) else [os.path.join(p, f) for f in sorted(os.listdir(p))] \
                if os.path.isdir(p) else []
            for f in files:
                if f.endswith(".md"):
                    out.write(open(f, encoding="utf-8", errors="replace").read())
    return path


def check(cond, msg, failures):
    failures.append((cond, msg))


def run_fixture(py, sprig, lte_check, tmp, name, g, failures):
    src = os.path.join(ROOT, "tests", "fixtures", "models", name)
    out = os.path.join(tmp, name + "-lte")
    text = text_file(tmp)
    cmd = [py, "-m", "tools.lte", "train", src, out, "--target-sparsity", str(TARGET), "--expert-size", str(g),
           "--stage1-steps", "120", "--stage2-steps", "50", "--search-runs", "5", "--seq-len", "32", "--batch-size", "8",
           "--train-tokens", "100000", "--eval-tokens", "4096", "--threads", "1", "--quiet"]
    if text:
        cmd += ["--text", text]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if r.returncode:
        return check(False, f"{name}: tools.lte train failed:\n{r.stdout}{r.stderr}", failures)
    rep = json.load(open(os.path.join(out, "lte_report.json")))
    conf = json.load(open(os.path.join(src, "config.json")))
    f, n_layers = conf["intermediate_size"], conf["num_hidden_layers"]
    from_file = subprocess.run([py, "-c", f"""
import json, torch
from tools.lte.st import load_file
sd = load_file({os.path.join(out, 'model.safetensors')!r})
ok = all(sorted(sd[f'model.layers.{{n}}.mlp.expert_permutation'].tolist()) == list(range({f}))
         and sd[f'model.layers.{{n}}.mlp.expert_permutation'].dtype == torch.int32 for n in range({n_layers}))
print(json.dumps(ok))"""], cwd=ROOT, capture_output=True, text=True)
    sizes = [s for layer in rep["expert_sizes"].values() for s in layer]
    check(len(sizes) == n_layers * f // g and all(s == g for s in sizes),
          f"{name}: {len(sizes)} experts, every one exactly {g} neurons", failures)
    check(from_file.stdout.strip() == "true", f"{name}: each expert_permutation is an I32 permutation of 0..{f - 1}",
          failures)
    sp = rep["heldout"]["lte_sparsity"]
    check(abs(sp - TARGET) <= TOL, f"{name}: held-out sparsity {sp:.3f} (hard rule), target {TARGET} +- {TOL} "
          f"(eta {rep['eta']:.4g}; perplexity dense {rep['heldout']['dense_ppl']:.1f}, "
          f"LTE {rep['heldout']['lte_ppl']:.1f})", failures)
    tokens = "1,17,42,99,5,250,7,3,64,128,11,300"
    r = subprocess.run([sprig, "run", out, "--tokens", tokens, "--max-tokens", "4", "--backend", "cpu"],
                       capture_output=True, text=True, timeout=60)
    check(r.returncode == 0, f"{name}: sprig run loads the LTE folder ({r.stdout.strip()} | "
          f"{r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ''})", failures)
    expected = os.path.join(tmp, name + "-expected.safetensors")
    r = subprocess.run([py, "-m", "tools.lte", "reference", out, "--tokens", tokens, "--out", expected],
                       cwd=ROOT, capture_output=True, text=True)
    if r.returncode:
        return check(False, f"{name}: tools.lte reference failed:\n{r.stderr}", failures)
    r = subprocess.run([lte_check, out, expected, str(REL)], capture_output=True, text=True)
    check(r.returncode == 0, f"{name}: sprig CPU vs PyTorch LTE forward: {r.stdout.strip()} {r.stderr.strip()} "
          f"(rel err <= {REL}, no decision differs)", failures)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: lte_train_test.py SPRIG LTE_CHECK")
    sprig, lte_check = sys.argv[1], sys.argv[2]
    py = python_with_torch()
    results = {name: [] for name, _ in FIXTURES}
    with tempfile.TemporaryDirectory(prefix="sprig-lte-") as tmp:
        # one fixture per core: each training process runs on one thread
        with concurrent.futures.ThreadPoolExecutor(len(FIXTURES)) as pool:
            for job in [pool.submit(run_fixture, py, sprig, lte_check, tmp, name, g, results[name])
                        for name, g in FIXTURES]:
                job.result()
    checks = [c for name, _ in FIXTURES for c in results[name]]
    for ok, msg in checks:
        print(("ok   " if ok else "FAIL ") + msg)
    failed = sum(not ok for ok, _ in checks)
    print(f"lte_train_test: {len(checks)} checks, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
